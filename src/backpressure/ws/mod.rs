//! WebSocket framing for the lab: tungstenite over a non-blocking stream, after the HTTP upgrade
//! was done by [`super::http`] (server) or by [`ClientHandshake`] (client).
//!
//! tungstenite is already resumable on `WouldBlock`; what this module adds is the mapping of its
//! many error cases onto the few things an event loop must decide:
//!
//! | tungstenite says                     | [`WsConn`] returns                         | the reactor does                 |
//! |--------------------------------------|--------------------------------------------|----------------------------------|
//! | `Io(WouldBlock)` on read             | `Recv::NotNow`                             | wait for READABLE                |
//! | `Io(WouldBlock)` on write            | `SendStatus::Queued` / `Flush::NotNow`     | flush on WRITABLE                |
//! | `WriteBufferFull(msg)`               | `SendStatus::Full(msg)`                    | stop producing, flush, retry msg |
//! | `Capacity` (message/frame too big)   | `Closed::ByUs { code: 1009 }`              | drain briefly, then drop         |
//! | `Protocol` / `Utf8` / attack         | `Closed::ByUs { code: 1002 / 1007 }`       | drain briefly, then drop         |
//! | a Close frame                        | `Closed::ByPeer { code }`                  | flush once, then drop            |
//! | `ConnectionClosed` / `AlreadyClosed` | `Closed::ByPeer` / `Closed::ByUs`          | drop                             |
//! | EOF or RST without a close handshake | `Closed::Reset`                            | drop                             |
//!
//! Memory is bounded: tungstenite 0.24 reads in fixed 4 KiB chunks (it has no
//! `read_buffer_size` knob) and keeps at most one frame (`max_frame_size`) plus one message being
//! reassembled (`max_message_size`); [`WsLimits`] sets a real `max_write_buffer_size` (the
//! default is unlimited) and `write_buffer_size = 0`, so a message is handed to the socket at
//! once and the kernel's send buffer, not ours, is where backpressure shows.
//!
//! [`Metered`] wraps the stream to count bytes and to give the server a read *budget*: the lab
//! server reads `read_size` bytes per `read_delay` even in WebSocket mode.

use std::io;

use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

mod conn;
mod handshake;
mod metered;

pub use conn::{CloseReply, WsConn};
#[allow(unused_imports, reason = "the response check stays callable as ws::*, like the rest of the handshake")]
pub use handshake::{check_response, client_request, ResponseCheck};
pub use handshake::{ClientHandshake, HandshakeStep};
pub use metered::Metered;

/// Largest WebSocket frame header (2 + 8 length + 4 mask bytes).
pub const MAX_FRAME_HEADER: usize = 14;
/// Largest handshake response head the client accepts.
pub const HANDSHAKE_RESPONSE_MAX: usize = 8192;
/// Largest control frame (Close, Ping, Pong): 2 header bytes, 125 payload bytes, 4 mask bytes.
pub const MAX_CONTROL_FRAME: usize = 2 + 125 + 4;
/// Close code for a message or frame over our limits.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a protocol violation.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code for a text message that is not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Retries of a read or write interrupted by a signal before giving up for this wake-up.
const INTERRUPTED_RETRIES: usize = 4;

/// Size limits of one WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest incoming message (after reassembling fragments).
    pub max_message_size: usize,
    /// Largest incoming frame payload.
    pub max_frame_size: usize,
    /// Most bytes of outgoing frames held in user space while the socket is full; a message
    /// that does not fit is refused with [`SendStatus::Full`].
    pub max_write_buffer_size: usize,
}

impl WsLimits {
    /// Limits for a peer that sends messages of up to `payload` bytes and receives small ones:
    /// room for exactly one outgoing frame in user space.
    pub fn for_payload(payload: usize, max_incoming: usize) -> WsLimits {
        WsLimits {
            max_message_size: max_incoming,
            max_frame_size: max_incoming,
            max_write_buffer_size: payload + MAX_FRAME_HEADER,
        }
    }

    /// The tungstenite configuration these limits stand for.
    pub fn config(&self) -> WebSocketConfig {
        WebSocketConfig {
            // Hand every message to the socket at once: backpressure is measured in the kernel.
            write_buffer_size: 0,
            // tungstenite panics unless max_write_buffer_size > write_buffer_size. Room for one
            // control frame on top: the reply to a peer's Close (or Ping) must fit behind a
            // partly written message, or tungstenite drops it when the message completes.
            max_write_buffer_size: self.max_write_buffer_size.max(1) + MAX_CONTROL_FRAME,
            max_message_size: Some(self.max_message_size),
            max_frame_size: Some(self.max_frame_size),
            accept_unmasked_frames: false,
            ..WebSocketConfig::default()
        }
    }
}

/// How a connection ended. `Copy`, so it can be stored and counted without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The peer started the close handshake with this code (`None`: it sent no code).
    ByPeer { code: Option<u16> },
    /// We failed or closed the connection and sent a Close frame with this code.
    ByUs { code: u16 },
    /// The stream ended (EOF or reset) without a close handshake.
    Reset,
    /// Any other transport error.
    Io(io::ErrorKind),
}

impl Closed {
    /// One line for logs and reports, from the point of view of `us` talking to `peer`
    /// (`"the server"`, `"this client"`): who closed, and why.
    pub fn describe(self, us: &str, peer: &str) -> String {
        match self {
            Closed::ByPeer { code: Some(code) } => format!("closed by {peer} (close code {code})"),
            Closed::ByPeer { code: None } => format!("closed by {peer} (no close code)"),
            Closed::ByUs { code: CLOSE_TOO_BIG } => {
                format!(
                    "closed by {us}: {peer} sent a frame or message over the size limit (close code {CLOSE_TOO_BIG})"
                )
            }
            Closed::ByUs { code: CLOSE_PROTOCOL } => {
                format!("closed by {us}: {peer} broke the WebSocket protocol (close code {CLOSE_PROTOCOL})")
            }
            Closed::ByUs { code: CLOSE_INVALID_DATA } => {
                format!("closed by {us}: {peer} sent text that is not UTF-8 (close code {CLOSE_INVALID_DATA})")
            }
            Closed::ByUs { code } => format!("closed by {us} (close code {code})"),
            Closed::Reset => format!("{peer} ended the connection without a close handshake (EOF or reset)"),
            Closed::Io(kind) => format!("connection error: {kind}"),
        }
    }

    /// True when the peer ended the connection (its Close, EOF or reset), false when we did.
    pub fn by_peer(self) -> bool {
        !matches!(self, Closed::ByUs { .. })
    }
}

/// Result of [`WsConn::recv`].
#[derive(Debug)]
pub enum Recv {
    /// A complete message. Ping and Pong are returned too (the Pong reply to a Ping is queued
    /// automatically); callers that only want data ignore them.
    #[cfg_attr(not(test), expect(dead_code, reason = "the lab only counts messages; tests read them"))]
    Message(Message),
    /// Nothing complete yet: wait for the next READABLE edge (or budget refill, see [`Metered`]).
    NotNow,
    /// The connection is over; every later call returns the same value.
    Closed(Closed),
}

/// Result of [`WsConn::send`].
#[derive(Debug)]
pub enum SendStatus {
    /// The whole frame is in the socket's send buffer.
    Sent,
    /// Accepted, but part of it waits in our write buffer: call [`WsConn::flush`] on WRITABLE.
    Queued,
    /// Refused: the write buffer has no room. Stop producing, flush on WRITABLE, then retry
    /// with the returned message.
    #[cfg_attr(not(test), expect(dead_code, reason = "the lab drops a refused message; tests read it"))]
    Full(Message),
    Closed(Closed),
}

/// Result of [`WsConn::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    Done,
    /// The socket is full: flush again on the next WRITABLE edge.
    NotNow,
    Closed(Closed),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_describes_who_closed() {
        let us = "this client";
        let peer = "the server";
        assert_eq!(Closed::ByPeer { code: Some(1000) }.describe(us, peer), "closed by the server (close code 1000)");
        let too_big = Closed::ByUs { code: CLOSE_TOO_BIG }.describe(us, peer);
        assert!(too_big.starts_with("closed by this client: the server sent") && too_big.contains("1009"), "{too_big}");
        assert!(Closed::Reset.describe(us, peer).starts_with("the server ended the connection"));
        assert!(Closed::ByPeer { code: None }.by_peer() && Closed::Reset.by_peer());
        assert!(!Closed::ByUs { code: 1000 }.by_peer());
    }
}
