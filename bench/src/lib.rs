//! sixsocks-bench: a load generator for SOCKS5 proxies (sixsocks and its
//! peers) with its own sink, source and echo servers, and the report that
//! turns its JSON lines into markdown tables. See bench/README.md.

pub mod connrate;
pub mod idle;
pub mod pingpong;
pub mod procfs;
pub mod report;
pub mod servers;
pub mod socks;
pub mod stats;
pub mod throughput;
