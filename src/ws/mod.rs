//! WebSocket (RFC 6455) on the reactors, shared by goon's client connections and the target's
//! `ws` modes: a sans-io frame codec ([`frame`]), the client's side of the opening handshake
//! ([`handshake`]; the server's side is [`crate::http`]'s head parser), and the two connection
//! state machines, [`client`] and [`sink`], each generic over a non-blocking `Read + Write`
//! stream so that TLS can sit underneath.
//!
//! tungstenite is not used for the connections themselves: its `WebSocket` keeps read and write
//! buffers per connection, and a held connection here costs a 14-byte header buffer and a few
//! words (see [`frame::Decoder`]). Only tungstenite's accept-key derivation is used.

pub mod client;
pub mod frame;
pub mod handshake;
pub mod sink;
