//! The `sixsocks` command: a SOCKS4/4a/5/6 proxy server (`serve`), the
//! SOCKS 6 gateway (`gateway`) and the tools (`check`, `passwd`,
//! `connect`, `resolve`, `completions`).

#![forbid(unsafe_code)]

mod check;
mod connect;
mod docs;
mod gateway;
mod log_text;
mod logging;
mod passwd;
mod privileges;
mod serve;

use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc, not glibc's malloc: tokio allocates each socket's readiness
/// state and each task 128-byte aligned, which glibc serves by carving
/// aligned chunks out of larger ones; mimalloc's size classes are
/// naturally aligned. Idle connections cost less memory, and allocation
/// less CPU (bench/README.md, "issue 16").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sixsocks_server::config::LogFormat;

/// sixsocks: a SOCKS4, SOCKS4a, SOCKS5 (with Tor's extensions) and SOCKS 6 proxy and client.
#[derive(Parser, Debug)]
// `--version`: the version, the git commit and the optional features
// built in (see build.rs).
#[command(
    name = "sixsocks",
    version = env!("SIXSOCKS_LONG_VERSION"),
    about,
    long_about = None
)]
struct Cli {
    /// More logging: -v for debug, -vv for trace. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the proxy server (the default when no subcommand is given).
    Serve(Box<serve::ServeArgs>),
    /// Run a local proxy for SOCKS4/5 applications that carries every request to a far SOCKS 6 proxy.
    Gateway(Box<gateway::GatewayArgs>),
    /// Check a configuration (file, users file, rules) and say what it means.
    Check(Box<check::CheckArgs>),
    /// Add a user to a users file, or change a user's password.
    Passwd(passwd::PasswdArgs),
    /// Connect to HOST:PORT through a proxy; stdin goes to it, its answer to stdout (like nc).
    Connect(connect::ConnectArgs),
    /// Resolve a name (or, with -x, an address) through a proxy (Tor's RESOLVE / RESOLVE_PTR).
    Resolve(connect::ResolveArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(docs::CompletionsArgs),
    /// Write the manual pages (sixsocks.1, sixsocks-COMMAND.1) into DIR.
    #[command(hide = true)]
    Manpages(docs::ManpagesArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `serve` starts logging once its configuration (log_format) is known.
    let text_logs = || logging::init(cli.verbose, LogFormat::Text);
    let result = match cli.command {
        None => serve::run(serve::ServeArgs::default(), cli.verbose),
        Some(Cmd::Serve(args)) => serve::run(*args, cli.verbose),
        Some(Cmd::Gateway(args)) => {
            let gateway::GatewayArgs {
                upstream,
                mode,
                serve,
            } = *args;
            let optimistic = mode == "optimistic";
            serve::run_with(serve, cli.verbose, move |a| {
                gateway::config(a, &upstream, optimistic)
            })
        }
        Some(Cmd::Check(args)) => {
            text_logs();
            check::run(*args)
        }
        Some(Cmd::Passwd(args)) => {
            text_logs();
            passwd::run(args)
        }
        Some(Cmd::Connect(args)) => {
            text_logs();
            connect::run_connect(args)
        }
        Some(Cmd::Resolve(args)) => {
            text_logs();
            connect::run_resolve(args)
        }
        Some(Cmd::Completions(args)) => {
            docs::completions(Cli::command(), args.shell, &mut std::io::stdout().lock());
            Ok(())
        }
        Some(Cmd::Manpages(args)) => docs::manpages(Cli::command(), &args.dir)
            .map(|_| ())
            .map_err(|e| {
                format!("cannot write manual pages to {}: {e}", args.dir.display()).into()
            }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sixsocks: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
