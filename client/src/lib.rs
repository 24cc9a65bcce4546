//! `sixsocks_client`: a tokio SOCKS4/4a/5 and SOCKS 6 client.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sixsocks_client::{connect, Proxy};
//! use tokio::io::AsyncWriteExt;
//!
//! let proxy: Proxy = "socks5h://alice:s3cret@127.0.0.1:1080".parse()?;
//! let mut stream = connect(&proxy, ("example.com", 80)).await?;
//! stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
//! # Ok(()) }
//! ```
//!
//! * [`Proxy`] / [`Scheme`]: the proxy, parsed from a URL (`socks4://`,
//!   `socks4a://`, `socks5://`, `socks5h://`) or built by hand.
//! * [`connect`], [`connect_with_data`] (optimistic data), [`resolve`] and
//!   [`resolve_ptr`] (Tor's RESOLVE extensions).
//! * [`handshake`]: the handshake alone, on any stream already open to a proxy.
//! * [`SocksStream`]: the resulting stream; bytes the proxy sent right behind
//!   its reply are read first.
//! * [`SocksListener`]: BIND (SOCKS4, SOCKS4a, SOCKS5, SOCKS 6; SOCKS 6 with a
//!   listen backlog: [`SocksBacklog`]), in the style of
//!   tokio's `TcpListener`: where the proxy listens, then `accept`.
//! * [`socks6`]: SOCKS 6 (draft -05, `socks6://`): CONNECT with the request,
//!   credentials and first data in one flight, NOOP, stack options, a token
//!   wallet per [`Socks6Session`], TCP Fast Open to the proxy.
//! * [`SocksDatagram`]: UDP ASSOCIATE (SOCKS5, SOCKS 6), in the style of tokio's
//!   `UdpSocket`: `send_to` / `recv_from` through the proxy's relay, with
//!   fragmentation on send when asked and reassembly on receipt.
//!
//! The protocol itself is `sixsocks_proto::client::ClientHandshake`, a
//! sans-IO state machine; this crate only does the IO, with a deadline on
//! every wait.

#![deny(unsafe_code)]

mod bind;
mod connect;
mod error;
mod proxy;
pub mod socks6;
mod socks6_info;
mod stream;
mod target;
mod to_proxy;
mod udp;

pub use bind::{SocksBacklog, SocksListener};
pub use connect::{
    connect, connect_to_proxy, connect_with_data, handshake, prepare_target, resolve, resolve_ptr,
};
pub use error::describe_socks6_refusal;
pub use error::{describe_refusal, ClientError, Stage};
pub use proxy::{Proxy, Scheme, UrlError, DEFAULT_PORT, DEFAULT_TIMEOUT};
pub use socks6::{
    socks6_connect, socks6_handshake, socks6_noop, ClientTfo, Socks6Info, Socks6Options,
    Socks6Session,
};
pub use stream::SocksStream;
pub use target::IntoTargetAddr;
pub use udp::SocksDatagram;

pub use sixsocks_proto::{Command, Host, Password, ReplyCode, TargetAddr, Version};
