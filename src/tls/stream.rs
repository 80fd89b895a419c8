//! [`Stream`]: one TCP socket, plain or carrying a rustls session, as a non-blocking
//! `Read + Write` of plaintext. rustls is sans-io: its connection only turns bytes into
//! bytes, and this type moves them between it and the mio socket.
//!
//! ```text
//!   kernel ──read_tls──▶ rustls ──process_new_packets──▶ plaintext ──read()──▶ caller
//!   kernel ◀─write_tls── rustls ◀────────writer()────────────────── write() ◀─ caller
//! ```
//!
//! Every call moves what it can until the socket says `WouldBlock` (mio is edge-triggered: an
//! edge is only re-armed by a `WouldBlock`), and whatever rustls has queued to send (handshake
//! flights, alerts, session tickets' acknowledgements) is written on every read and write, so
//! the caller never drives the record layer itself. `WouldBlock` from [`Stream::read`] means
//! the socket was drained; from [`Stream::write`], that rustls' send buffer is full and the
//! socket is too.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// Most TLS bytes rustls queues for sending before [`Stream::write`] reports `WouldBlock`.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// Why a handshake (or a TLS read) ended a connection.
#[derive(Debug)]
pub enum Failure {
    /// The peer closed the TCP connection (FIN) before the handshake was done.
    Eof,
    /// The socket failed (reset, ...).
    Io(io::Error),
    /// rustls refused what it got, or the peer sent an alert.
    Tls(rustls::Error),
}

/// How far a handshake got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Waiting for the peer (the socket is drained).
    Pending,
    Done,
}

/// A TCP socket, plain or with a TLS session over it.
pub struct Stream {
    sock: TcpStream,
    /// Boxed: a rustls connection is a few KiB, and a plain stream pays one pointer for it.
    tls: Option<Box<Connection>>,
}

impl Stream {
    pub fn plain(sock: TcpStream) -> Stream {
        Stream { sock, tls: None }
    }

    /// Starts the client side of a handshake (the ClientHello is queued; the next
    /// [`Stream::handshake`] sends it).
    pub fn start_client(&mut self, cfg: Arc<ClientConfig>, name: ServerName<'static>) -> Result<(), rustls::Error> {
        let mut c = ClientConnection::new(cfg, name)?;
        c.set_buffer_limit(Some(SEND_BUFFER_BYTES));
        self.tls = Some(Box::new(Connection::Client(c)));
        Ok(())
    }

    /// Makes this the server side of a handshake (driven by the first reads).
    pub fn start_server(&mut self, cfg: Arc<ServerConfig>) -> Result<(), rustls::Error> {
        let mut c = ServerConnection::new(cfg)?;
        c.set_buffer_limit(Some(SEND_BUFFER_BYTES));
        self.tls = Some(Box::new(Connection::Server(c)));
        Ok(())
    }

    /// The TLS session, if this stream carries one.
    pub fn session(&self) -> Option<&Connection> {
        self.tls.as_deref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Writes what rustls has queued until it is all out or the socket is full (`Ok` either
    /// way: the rest goes out on a later call). A plain stream has nothing queued.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else { return Ok(()) };
        while tls.wants_write() {
            match tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether rustls still holds bytes for the socket.
    pub fn tls_wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Drives the handshake as far as the socket allows: sends the queued flight, reads and
    /// processes what arrived, until it is done or the socket is drained. On a TLS error the
    /// alert rustls queued is sent (best effort) before the error is returned. A plain stream
    /// is always `Done`.
    pub fn handshake(&mut self) -> Result<Handshake, Failure> {
        loop {
            self.flush_tls().map_err(Failure::Io)?;
            let Some(tls) = self.tls.as_mut() else { return Ok(Handshake::Done) };
            if !tls.is_handshaking() {
                return Ok(Handshake::Done);
            }
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Err(Failure::Eof),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = self.flush_tls();
                        return Err(Failure::Tls(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Handshake::Pending),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    /// Ends our direction: a TLS close_notify (best effort), then the TCP FIN.
    pub fn close_write(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.flush_tls();
        }
        self.sock.shutdown(Shutdown::Write)
    }
}

/// A TLS error as an `io::Error` (kind `InvalidData`), for callers that only read and write.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Read for Stream {
    /// Plaintext. `Ok(0)` is the end: the peer's close_notify, or its FIN (with or without
    /// close_notify: a truncation is an end all the same for a connection that reads and
    /// drops). A TLS error comes back as `InvalidData`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.sock.read(buf);
        }
        loop {
            self.flush_tls()?;
            let Some(tls) = self.tls.as_mut() else { return Ok(0) };
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.sock) {
                // rustls notes the EOF; the reader above reports it next time round.
                Ok(0) => {}
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                let _ = self.flush_tls();
                return Err(tls_error(e));
            }
        }
    }
}

impl Write for Stream {
    /// Plaintext in; `WouldBlock` once rustls' send buffer ([`SEND_BUFFER_BYTES`]) is full and
    /// the socket takes no more.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.sock.write(buf);
        }
        self.flush_tls()?;
        let Some(tls) = self.tls.as_mut() else { return Ok(0) };
        let n = tls.writer().write(buf)?;
        self.flush_tls()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Everything queued out to the kernel, or `WouldBlock`.
    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()?;
        if self.tls_wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.sock.flush()
    }
}

/// The TCP socket under the stream: socket options, addresses, `take_error`.
impl Deref for Stream {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.sock
    }
}

impl DerefMut for Stream {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.sock
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.sock.register(r, t, i)
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.sock.reregister(r, t, i)
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.sock.deregister(r)
    }
}
