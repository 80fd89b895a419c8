//! `Ring`: a fixed-capacity byte ring for one direction of a connection. It never grows: when
//! it is full the owner stops reading that socket, which is what turns a slow consumer into
//! TCP backpressure on the producer instead of memory growth here. Rings are borrowed from and
//! returned to a reactor's [`super::pool::BufPool`]; [`Ring::clear`] resets one for reuse
//! without touching its bytes.

use std::io::{self, Read, Write};

pub struct Ring {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring { buf: vec![0u8; capacity.max(1)].into_boxed_slice(), head: 0, len: 0 }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// Forgets the contents (a ring going back to its pool): head and length reset, the bytes
    /// left as they are, so reuse costs no memset.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The contiguous free region after the data (may be shorter than the total free space).
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let cap = self.buf.len();
        let tail = (self.head + self.len) % cap;
        let end = if tail >= self.head && self.len < cap { cap } else { self.head };
        let end = if self.len == cap { tail } else { end };
        &mut self.buf[tail..end]
    }

    /// Marks `n` bytes of `spare_mut()` as filled.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.buf.len());
        self.len = (self.len + n).min(self.buf.len());
    }

    /// The contiguous readable region at the head.
    pub fn data(&self) -> &[u8] {
        let end = (self.head + self.len).min(self.buf.len());
        &self.buf[self.head..end]
    }

    /// Drops `n` bytes from the head.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 { 0 } else { (self.head + n) % self.buf.len() };
    }

    /// One `read` into the spare region. `Ok(0)` from the socket is returned as `Ok(0)` (EOF).
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        let spare = self.spare_mut();
        if spare.is_empty() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "ring full"));
        }
        let n = r.read(spare)?;
        self.commit(n);
        Ok(n)
    }

    /// One `write` from the head.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        let n = w.write(self.data())?;
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_never_grows() {
        let mut r = Ring::new(8);
        r.spare_mut()[..6].copy_from_slice(b"abcdef");
        r.commit(6);
        assert_eq!(r.data(), b"abcdef");
        r.consume(4);
        assert_eq!(r.data(), b"ef");
        // Free space is now [6..8) then [0..4): spare is the first contiguous part.
        assert_eq!(r.spare_mut().len(), 2);
        r.spare_mut().copy_from_slice(b"gh");
        r.commit(2);
        assert_eq!(r.spare_mut().len(), 4);
        r.spare_mut().copy_from_slice(b"ijkl");
        r.commit(4);
        assert!(r.is_full());
        assert!(r.spare_mut().is_empty());
        assert_eq!(r.data(), b"efgh");
        r.consume(4);
        assert_eq!(r.data(), b"ijkl");
        r.consume(4);
        assert!(r.is_empty());
        assert_eq!(r.spare_mut().len(), 8);
        assert_eq!(r.capacity(), 8);
    }

    #[test]
    fn byte_exact_through_random_chunks() {
        let mut rng = fastrand::Rng::with_seed(7);
        let input: Vec<u8> = (0..10_000).map(|_| rng.u8(..)).collect();
        let mut out = Vec::new();
        let mut r = Ring::new(97);
        let mut src = &input[..];
        while !src.is_empty() || !r.is_empty() {
            if !src.is_empty() {
                let take = rng.usize(0..=src.len().min(40));
                let mut lim = &src[..take];
                if let Ok(n) = r.read_from(&mut lim) {
                    src = &src[n..];
                }
            }
            let mut w = Vec::new();
            let _ = r.write_to(&mut w);
            out.extend_from_slice(&w);
        }
        assert_eq!(out, input);
    }
}
