//! `sixsocks check`: validate a configuration and say what it means.

use std::fmt::Write as _;

use clap::Args;
use sixsocks_server::auth::Users;
use sixsocks_server::rules::Rules;
use sixsocks_server::Config;

use crate::serve::ServeArgs;

/// Options of `sixsocks check`: the same as `serve`'s.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Validate the configuration `serve` would run with (file, users file,
/// rules) and print a summary; an error says what is wrong.
pub fn run(args: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.serve.config()?;
    let users = match &config.users_file {
        Some(path) => Some(Users::load(path)?),
        None => None,
    };
    print!("{}", describe(&config, users.as_ref().map(Users::len)));
    Ok(())
}

/// What a valid configuration means, in words.
pub fn describe(c: &Config, users: Option<usize>) -> String {
    let mut out = String::new();
    let listen: Vec<String> = c.listen.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(out, "configuration is valid");
    let _ = writeln!(out, "listen: {}", listen.join(", "));
    match (&c.users_file, users) {
        (Some(path), Some(n)) => {
            let _ = writeln!(
                out,
                "authentication: username/password required ({n} users in {}); SOCKS4 refused",
                path.display()
            );
        }
        _ => {
            let _ = writeln!(out, "authentication: none");
        }
    }
    let rules = Rules::new(c.rule.clone());
    if rules.is_empty() {
        let _ = writeln!(out, "rules: none (every request passes)");
    } else {
        let _ = writeln!(out, "rules (first match wins):");
        for (i, r) in rules.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {}", i + 1, r.describe());
        }
        let _ = writeln!(out, "  anything else: block");
    }
    describe_upstreams_and_users(c, &mut out);
    describe_settings(c, &mut out);
    out
}

/// The `[upstream.NAME]` and `[users.NAME]` sections, one line each.
fn describe_upstreams_and_users(c: &Config, out: &mut String) {
    for (name, up) in &c.upstream {
        // The URL as the proxy prints it: the password hidden.
        let url = up
            .proxy()
            .map_or_else(|_| "<invalid>".to_string(), |p| p.to_string());
        let creds = if up.pass_credentials {
            "each client's own credentials passed on"
        } else {
            "the URL's credentials"
        };
        let _ = writeln!(
            out,
            "upstream {name}: {url} ({creds}; timeout {} s)",
            up.connect_timeout.unwrap_or(c.connect_timeout)
        );
    }
    for (name, u) in &c.users {
        let mut parts = Vec::new();
        if let Some(n) = u.max_sessions {
            parts.push(format!("at most {n} sessions"));
        }
        if let Some(b) = u.bandwidth {
            parts.push(format!("{b} bytes/s each way"));
        }
        if let Some(s) = u.source {
            parts.push(format!("source address {s}"));
        }
        let who = if name == "*" {
            "every other user".to_string()
        } else {
            format!("user {name}")
        };
        let _ = writeln!(out, "{who}: {}", parts.join(", "));
    }
}

/// Commands, limits, timeouts and the other settings, a line per group.
fn describe_settings(c: &Config, out: &mut String) {
    let onoff = |b: bool| if b { "on" } else { "off" };
    let _ = writeln!(
        out,
        "commands: CONNECT, RESOLVE, RESOLVE_PTR on; BIND {}; UDP ASSOCIATE {}",
        onoff(c.allow_bind),
        onoff(c.allow_udp)
    );
    let _ = writeln!(
        out,
        "limits: {} clients{}, per address {} connections and {} handshakes; \
         failed logins per address: {}",
        c.max_clients(),
        if c.max_clients.is_none() {
            " (derived from the open-file limit)"
        } else {
            ""
        },
        c.max_clients_per_address,
        c.max_handshakes_per_address,
        match c.auth_failure_burst {
            0 => "unlimited".to_string(),
            n => format!("{n} in a row, then {} a minute", c.auth_failures_per_minute),
        }
    );
    let _ = writeln!(
        out,
        "BIND ports (SOCKS 6): {}; UDP bytes waiting for lookups: {} per association, {} in all",
        c.bind_ports
            .map_or_else(|| "ephemeral only".to_string(), |r| r.to_string()),
        c.udp_lookup_queue_bytes,
        c.udp_lookup_queue_bytes_total
    );
    let _ = writeln!(
        out,
        "timeouts: handshake {} s, connect {} s, idle {}",
        c.handshake_timeout,
        c.connect_timeout,
        match c.idle_timeout {
            0 => "never".to_string(),
            n => format!("{n} s"),
        }
    );
    let _ = writeln!(
        out,
        "extended errors: {}; lenient auth: {}; relay: {}",
        onoff(c.extended_errors),
        onoff(c.lenient_auth),
        format!("{:?}", c.relay_mode).to_lowercase()
    );
    let _ = writeln!(
        out,
        "metrics: {}; log format: {}",
        c.metrics
            .map_or_else(|| "off".to_string(), |a| format!("http://{a}/metrics")),
        format!("{:?}", c.log_format).to_lowercase()
    );
    if c.user.is_some() || c.group.is_some() {
        let _ = writeln!(
            out,
            "privileges: dropped after binding to user {} group {}",
            c.user.as_deref().unwrap_or("(unchanged)"),
            c.group.as_deref().unwrap_or("(the user's)")
        );
    }
}
