//! Kernel pipes for zero-copy forwarding: `pipe2`, `fcntl(F_SETPIPE_SZ)` and `splice(2)`.
//!
//! A proxied direction with splice on moves bytes socket → pipe → socket without copying them
//! into user space: the pipe holds references to the socket's pages. The pipe is the only
//! buffer the direction has, so its size (set to the proxy's `buffer_size`, rounded up by the
//! kernel to whole pages) bounds what the proxy holds for that direction, exactly as a `Ring`
//! does on the copy path. Both ends are non-blocking (`O_NONBLOCK` on the pipe, and
//! `SPLICE_F_NONBLOCK` on each call), so a full pipe or an empty socket is `WouldBlock`, never
//! a stall of the reactor.
//!
//! Besides `sys.rs` and `tcp_info.rs`, this is the only module with `unsafe`: each block wraps
//! one libc call, with a `// SAFETY:` note, on descriptors this module owns or borrows for the
//! call (`OwnedFd`, `BorrowedFd`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One non-blocking kernel pipe. The descriptors close on drop.
pub struct KernelPipe {
    rd: OwnedFd,
    wr: OwnedFd,
    /// Bytes the pipe can hold, as the kernel reported after `F_SETPIPE_SZ`.
    capacity: usize,
}

impl KernelPipe {
    /// Creates a pipe (`O_NONBLOCK | O_CLOEXEC`) and asks for `size` bytes of capacity. When the
    /// kernel refuses the size (`EPERM` above `/proc/sys/fs/pipe-max-size` for unprivileged
    /// users), the pipe keeps its default size, which `capacity()` reports.
    pub fn new(size: usize) -> io::Result<KernelPipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid, writable array of two c_ints, which pipe2 fills on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let want = size.min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: fcntl on an open descriptor we own, with an integer argument.
        let mut got = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
        if got < 0 {
            // SAFETY: as above; F_GETPIPE_SZ takes no argument.
            got = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        if got <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KernelPipe { rd, wr, capacity: got as usize })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `len` bytes from the socket `src` into the pipe. `Ok(0)` is EOF on `src`.
    /// `WouldBlock` means the socket has no data *or* the pipe has no free slot.
    pub fn fill_from(&self, src: &impl AsFd, len: usize) -> io::Result<usize> {
        splice(src.as_fd(), self.wr.as_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe to the socket `dst`. `WouldBlock` means the socket's
    /// send buffer is full (the caller only calls this with bytes in the pipe).
    pub fn drain_to(&self, dst: &impl AsFd, len: usize) -> io::Result<usize> {
        splice(self.rd.as_fd(), dst.as_fd(), len)
    }
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: both descriptors are open for the duration of the call (`BorrowedFd`s of owners
        // that outlive it); null offsets mean "use the file position", as pipes and sockets
        // require. No user memory is passed.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn socket_to_pipe_to_socket_is_byte_exact_and_bounded() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        let (mut d, _) = l2.accept().unwrap();
        d.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let p = KernelPipe::new(16 << 10).unwrap();
        assert!(p.capacity() >= 16 << 10);
        // Empty socket: WouldBlock, not a block.
        assert_eq!(p.fill_from(&b, 4096).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        a.write_all(&data).unwrap();
        let mut moved = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while moved < data.len() {
            match p.fill_from(&b, data.len() - moved) {
                Ok(n) => {
                    let mut out = 0;
                    while out < n {
                        out += p.drain_to(&c, n - out).unwrap();
                    }
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            assert!(std::time::Instant::now() < deadline);
        }
        let mut got = vec![0u8; data.len()];
        d.read_exact(&mut got).unwrap();
        assert_eq!(got, data);
        drop(a);
        // EOF on the source is Ok(0).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match p.fill_from(&b, 4096) {
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => panic!("{r:?}"),
            }
            assert!(std::time::Instant::now() < deadline);
        }
    }
}
