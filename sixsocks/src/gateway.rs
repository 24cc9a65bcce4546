//! `sixsocks gateway`: a local proxy for applications that speak SOCKS4,
//! 4a and 5 only, which carries every request to a far sixsocks (or any
//! SOCKS 6 proxy) as one SOCKS 6 request: the application's first bytes
//! ride with it as initial data, the credentials in it, and, after the
//! first, a session and an idempotence token, so that the request may go
//! in a TCP Fast Open SYN (`server/src/upstream.rs`).
//!
//! It is `serve` with a `[gateway]` table (`Config::apply_gateway`): one
//! more upstream, `gateway`, to which every passing rule routes (a
//! configuration without rules gets one that passes everything there): the
//! same listener, limits, logs, metrics and reloads. A configuration file
//! with a `[gateway]` table makes `serve` the same gateway.
//!
//! Two modes. Optimistic (the default): the application is answered at
//! once, so that its first bytes go with the SOCKS 6 request; a target the
//! far proxy cannot reach then resets the accepted connection. Strict: the
//! application's reply waits for the far proxy's and carries its code.

use clap::Args;
use sixsocks_server::config::{GatewayConfig, GatewayMode};
use sixsocks_server::Config;

use crate::serve::ServeArgs;

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// The far SOCKS 6 proxy: socks6://[user:pass@]host:port, with
    /// ?profile=draft-05|draft-11|ref-207 (default draft-11).
    #[arg(long, value_name = "URL", env = "SIXSOCKS_UPSTREAM")]
    pub upstream: String,

    /// optimistic: answer applications at once, so that their first bytes
    /// ride with the request (a refused target resets the connection);
    /// strict: answer after the far proxy, with its reply code.
    #[arg(long, value_name = "MODE", default_value = "optimistic",
          value_parser = ["optimistic", "strict"])]
    pub mode: String,

    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `serve`'s configuration with the far proxy as upstream `gateway` and
/// every passing rule routed to it.
pub fn config(
    args: &ServeArgs,
    upstream: &str,
    optimistic: bool,
) -> Result<Config, Box<dyn std::error::Error>> {
    let mut c = args.config_unchecked()?;
    c.gateway = Some(GatewayConfig {
        upstream: upstream.to_string(),
        mode: if optimistic {
            GatewayMode::Optimistic
        } else {
            GatewayMode::Strict
        },
    });
    c.apply_gateway()
        .map_err(|e| e.replace("[gateway] upstream", "--upstream"))?;
    c.validate()?;
    Ok(c)
}
