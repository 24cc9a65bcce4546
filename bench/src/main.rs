//! `sixsocks-bench`: one benchmark case per run, one JSON line on stdout.
//! `bench/run.sh` drives it; `sixsocks-bench report` makes the tables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};
use sixsocks_bench::socks::Route;
use sixsocks_bench::throughput::Direction;
use sixsocks_bench::{connrate, idle, pingpong, procfs, report, throughput};

#[derive(Parser)]
#[command(
    name = "sixsocks-bench",
    about = "Load generator for SOCKS5 proxies",
    version
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bulk transfer on N streams for a fixed time: Gbit/s, stalls, proxy CPU per GB.
    Throughput {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum)]
        direction: Direction,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Seconds before the measured window.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Seconds of the measured window.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
    },
    /// W workers looping connect + handshake + 64-byte echo + close: conn/s, latency, CPU per connection.
    Connrate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
    },
    /// Round trips of SIZE bytes on one connection: p50/p99.
    Pingpong {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1)]
        size: usize,
        #[arg(long, default_value_t = 20000)]
        count: usize,
    },
    /// Open K relayed connections, hold them idle, measure the proxy's memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        #[arg(long, default_value_t = 8)]
        openers: usize,
        /// Seconds between the last connection opened and the measurement.
        #[arg(long, default_value_t = 1.0)]
        settle: f64,
        /// Write this file when all connections are open; hold them until it is removed.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Longest hold with --ready-file, seconds.
        #[arg(long, default_value_t = 300.0)]
        hold_max: f64,
        /// Give up opening connections after this many seconds.
        #[arg(long, default_value_t = 120.0)]
        open_timeout: f64,
        /// Spread the client ends over this many source addresses
        /// (127.0.1.1, 127.0.1.2, ...; the proxy must be on loopback), so
        /// that a proxy's per-address caps (sixsocks: 512 connections by
        /// default) do not refuse them. 0: the system's choice (127.0.0.1).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=250))]
        sources: u16,
        /// Connections relayed and closed before the proxy's warm rest is
        /// measured: the figures beyond it leave out what only the first
        /// connections cost (code faulted in, the allocator's first pages).
        /// 0: measure from the start only.
        #[arg(long, default_value_t = 16)]
        warm: usize,
    },
    /// Markdown tables (median and spread of repetitions, ratios) from JSON lines.
    Report {
        /// Files of JSON lines written by the other subcommands.
        files: Vec<PathBuf>,
        /// The label of the proxy under test.
        #[arg(long, default_value = "sixsocks")]
        subject: String,
        /// The label of the direct (no proxy) runs.
        #[arg(long, default_value = "direct")]
        baseline: String,
        /// The label of the floor relay's runs (bench/floor/): the subject's
        /// figures are divided by its too; it is never the best peer.
        #[arg(long, default_value = "floor")]
        floor: String,
        /// Print the figures as one JSON object (for bench/charts.py), not markdown.
        #[arg(long)]
        json: bool,
        /// Exit with status 1 if any run of these labels (comma-separated)
        /// failed or stalled. Without it, stalled and failed runs are only
        /// reported.
        #[arg(long, value_delimiter = ',')]
        require_ok: Vec<String>,
    },
    /// The target of `idle`, run by it in a process of its own.
    #[command(hide = true)]
    HoldTarget {
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
    },
    /// CPU ticks, RSS and PSS of a process tree, as JSON.
    ProcStats { pid: u32 },
    /// Time to the first response byte of one HTTP/1.0 GET through a SOCKS 6
    /// proxy, with the client library (bench/rtt.sh: the round-trip table).
    /// Prints the milliseconds of each measured repetition, one per line.
    Ttfb {
        /// The SOCKS 6 proxy URL (socks6://[user:pass@]host:port).
        #[arg(long)]
        proxy: String,
        /// The HTTP server, as the proxy reaches it.
        #[arg(long)]
        target: SocketAddr,
        /// TCP Fast Open on the client–proxy leg, with idempotence tokens
        /// (a token-spending request may ride in the SYN).
        #[arg(long)]
        tfo: bool,
        /// Unmeasured requests first (TFO cookie, token window).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Wait until ADDR accepts TCP connections.
    WaitPort {
        addr: SocketAddr,
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// SOCKS5 proxy to measure (no authentication).
    #[arg(long, conflicts_with_all = ["direct", "socks6"], required_unless_present_any = ["direct", "socks6"])]
    proxy: Option<SocketAddr>,
    /// SOCKS 6 proxy to measure (no authentication; `connrate` only: the
    /// echo bytes go with the request, 0-RTT).
    #[arg(long, conflicts_with = "direct")]
    socks6: Option<SocketAddr>,
    /// The SOCKS 6 wire profile (draft-05, draft-11 or ref-207).
    #[arg(long, default_value = "draft-05", value_parser = parse_profile)]
    socks6_profile: sixsocks_proto::v6::Profile,
    /// Connect straight to the target: the machine's limit.
    #[arg(long)]
    direct: bool,
    /// Address the built-in target servers listen on (the proxy connects there).
    #[arg(long, default_value = "127.0.0.1")]
    target: IpAddr,
    /// PID of the proxy: its process tree's CPU time (and memory) is measured.
    #[arg(long)]
    proxy_pid: Option<u32>,
    /// No progress for this many milliseconds is a stall.
    #[arg(long, default_value_t = 1000)]
    stall_ms: u64,
    /// Label of the peer measured (copied into the output).
    #[arg(long, default_value = "")]
    label: String,
    /// Repetition number (copied into the output).
    #[arg(long, default_value_t = 0)]
    rep: u32,
    /// Name the TCP congestion control of this network namespace in the
    /// case (", cubic"): for cases run under more than one. Every line
    /// records it as `cc` anyway.
    #[arg(long)]
    case_cc: bool,
}

impl Common {
    fn route(&self) -> Route {
        if self.direct {
            return Route::Direct;
        }
        match (self.proxy, self.socks6) {
            (Some(p), _) => Route::Socks5(p),
            (None, Some(p)) => Route::Socks6(p, self.socks6_profile),
            (None, None) => Route::Direct,
        }
    }
    fn stall(&self) -> Duration {
        Duration::from_millis(self.stall_ms.max(1))
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report {
            files,
            subject,
            baseline,
            floor,
            json,
            require_ok,
        } => {
            let mut records = Vec::new();
            for f in &files {
                match std::fs::read_to_string(f) {
                    Ok(s) => records.extend(report::parse_lines(&s)),
                    Err(e) => {
                        eprintln!("sixsocks-bench: {}: {e}", f.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            if json {
                println!("{}", report::summary(&records, &subject, &baseline, &floor));
            } else {
                print!("{}", report::render(&records, &subject, &baseline, &floor));
            }
            // A stall is a result, shown in the report; only the labels
            // named by --require-ok must not have any.
            let bad = if require_ok.is_empty() {
                Vec::new()
            } else {
                report::failures(&records, &require_ok)
            };
            if !bad.is_empty() {
                eprintln!("sixsocks-bench: runs that must not fail did:");
                for b in bad {
                    eprintln!("  {b}");
                }
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Cmd::HoldTarget { ip } => match idle::hold_target(ip) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sixsocks-bench hold-target: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::ProcStats { pid } => match procfs::snapshot(pid) {
            Ok(u) => {
                println!(
                    "{}",
                    json!({"pid": pid, "procs": u.procs, "cpu_ticks": u.cpu_ticks,
                           "cpu_s": u.cpu_secs(), "rss_kib": u.rss_kib, "pss_kib": u.pss_kib})
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sixsocks-bench: pid {pid}: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Ttfb {
            proxy,
            target,
            tfo,
            warmup,
            reps,
        } => match ttfb(&proxy, target, tfo, warmup, reps) {
            Ok(ms) => {
                for m in ms {
                    println!("{m:.1}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sixsocks-bench ttfb: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::WaitPort { addr, timeout } => {
            let until = std::time::Instant::now() + secs(timeout);
            loop {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return ExitCode::SUCCESS;
                }
                if std::time::Instant::now() >= until {
                    eprintln!("sixsocks-bench: {addr} does not accept connections");
                    return ExitCode::FAILURE;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Cmd::Throughput {
            common,
            direction,
            streams,
            warmup,
            duration,
        } => {
            let o = throughput::Opts {
                direction,
                streams,
                warmup: secs(warmup),
                duration: secs(duration),
                stall: common.stall(),
            };
            let case = format!(
                "{}, {streams} stream{}",
                serde_json::to_value(direction)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                if streams == 1 { "" } else { "s" }
            );
            measure(&common, "throughput", &case, |route, ip| {
                let r = throughput::run(route, ip, &o)?;
                let mut problems = Vec::new();
                if r.stalled_streams > 0 {
                    problems.push(format!(
                        "{}/{} streams stalled (longest gap {} ms)",
                        r.stalled_streams, r.streams, r.max_gap_ms
                    ));
                }
                if r.failed_streams > 0 {
                    problems.push(format!("{}/{} streams failed", r.failed_streams, r.streams));
                }
                Ok(Measured {
                    stalled: r.stalled_streams > 0,
                    problem: (!problems.is_empty()).then(|| problems.join("; ")),
                    per_gb: Some(r.relayed_bytes as f64 / 1e9),
                    per_conn: None,
                    per_round_trip: None,
                    value: to_value(&r),
                    summary: format!("{:.2} Gbit/s", r.gbps),
                })
            })
        }
        Cmd::Connrate {
            common,
            workers,
            warmup,
            duration,
        } => {
            let o = connrate::Opts {
                workers,
                warmup: secs(warmup),
                duration: secs(duration),
                stall: common.stall(),
            };
            let mut case = format!("{workers} worker{}", if workers == 1 { "" } else { "s" });
            if let Route::Socks6(_, profile) = common.route() {
                // -05 keeps its old name, so that earlier runs compare.
                case.push_str(match profile {
                    sixsocks_proto::v6::Profile::Draft05 => ", SOCKS 6 0-RTT",
                    sixsocks_proto::v6::Profile::Draft11 => ", SOCKS 6 -11 0-RTT",
                    _ => ", SOCKS 6 ref-207 0-RTT",
                });
            }
            measure(&common, "connrate", &case, |route, ip| {
                let r = connrate::run(route, ip, &o)?;
                let problem = (r.errors > 0 || r.stalled > 0 || r.conns_window == 0).then(|| {
                    format!(
                        "{} completed, {} failed, {} stalled; first: {}",
                        r.conns_window,
                        r.errors,
                        r.stalled,
                        r.first_error.as_deref().unwrap_or("-")
                    )
                });
                Ok(Measured {
                    stalled: r.stalled > 0,
                    problem,
                    per_gb: None,
                    per_conn: Some(r.conns_total as f64),
                    per_round_trip: None,
                    value: to_value(&r),
                    summary: format!(
                        "{:.0} conn/s, p50 {:.0} µs, p99 {:.0} µs",
                        r.conns_per_s, r.latency.p50_us, r.latency.p99_us
                    ),
                })
            })
        }
        Cmd::Pingpong {
            common,
            size,
            count,
        } => {
            let stall = common.stall();
            measure(&common, "pingpong", &format!("{size} B"), |route, ip| {
                let r = pingpong::run(route, ip, size, count, stall)?;
                Ok(Measured {
                    stalled: r.stalled,
                    problem: r.error.clone(),
                    per_gb: None,
                    per_conn: None,
                    // The unmeasured warm-up ones cost CPU too (the one
                    // connection's set-up is counted in, and negligible).
                    per_round_trip: Some((r.round_trips + pingpong::WARMUP) as f64),
                    value: to_value(&r),
                    summary: format!("p50 {:.1} µs, p99 {:.1} µs", r.rtt.p50_us, r.rtt.p99_us),
                })
            })
        }
        Cmd::Idle {
            common,
            conns,
            openers,
            settle,
            ready_file,
            hold_max,
            open_timeout,
            sources,
            warm,
        } => {
            let o = idle::Opts {
                conns,
                openers,
                settle: secs(settle),
                proxy_pid: common.proxy_pid,
                ready_file,
                hold_max: secs(hold_max),
                open_timeout: secs(open_timeout),
                sources: sources.into(),
                target_exe: std::env::current_exe().ok(),
                warm,
            };
            let case = format!("{} conns", report::thousands(conns as f64));
            measure(&common, "idle", &case, |route, ip| {
                let r = idle::run(route, ip, &o)?;
                let problem = (r.conns_open < r.conns_requested || r.errors > 0).then(|| {
                    format!(
                        "{} of {} opened; first error: {}",
                        r.conns_open,
                        r.conns_requested,
                        r.first_error.as_deref().unwrap_or("-")
                    )
                });
                Ok(Measured {
                    stalled: false,
                    problem,
                    per_gb: None,
                    per_conn: None,
                    per_round_trip: None,
                    value: to_value(&r),
                    summary: format!(
                        "{} open in {:.1} s, RSS {:.2} KiB/conn, PSS {:.2} KiB/conn, anonymous {:.2} KiB/conn; beyond the warm rest: RSS {:.2}, anonymous {:.2}",
                        r.conns_open,
                        r.open_s,
                        r.rss_kib_per_conn.unwrap_or(f64::NAN),
                        r.pss_kib_per_conn.unwrap_or(f64::NAN),
                        r.anon_kib_per_conn.unwrap_or(f64::NAN),
                        r.rss_kib_per_conn_warm.unwrap_or(f64::NAN),
                        r.anon_kib_per_conn_warm.unwrap_or(f64::NAN)
                    ),
                })
            })
        }
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// What a case reports to [`measure`].
struct Measured {
    stalled: bool,
    problem: Option<String>,
    /// Gigabytes the proxy relayed (to divide its CPU time by).
    per_gb: Option<f64>,
    /// Connections it carried (to divide its CPU time by).
    per_conn: Option<f64>,
    /// Round trips it carried, warm-up included (to divide its CPU time by).
    per_round_trip: Option<f64>,
    value: Value,
    /// A few words for the progress log on stderr.
    summary: String,
}

/// Runs one case with the proxy's CPU time read around it and prints the
/// JSON line. Exit status 0 whenever a line was printed (even for a stall:
/// the report shows it), 1 if the case could not run at all.
fn measure(
    common: &Common,
    mode: &str,
    case: &str,
    f: impl FnOnce(Route, IpAddr) -> std::io::Result<Measured>,
) -> ExitCode {
    let mut rec = Map::new();
    let cc = procfs::congestion_control();
    let case = match (&cc, common.case_cc) {
        (Some(cc), true) => format!("{case}, {cc}"),
        _ => case.to_string(),
    };
    let case = case.as_str();
    rec.insert("mode".into(), json!(mode));
    rec.insert("case".into(), json!(case));
    rec.insert("cc".into(), json!(cc));
    rec.insert("label".into(), json!(common.label));
    rec.insert("rep".into(), json!(common.rep));
    let route = common.route();
    rec.insert(
        "route".into(),
        json!(match route {
            Route::Direct => "direct".to_string(),
            Route::Socks5(p) => format!("socks5://{p}"),
            Route::Socks6(p, profile) => {
                format!("socks6://{p}?profile={}", profile.setting_name())
            }
        }),
    );
    let tcp_before = procfs::tcp_counters();
    let before = common.proxy_pid.map(procfs::snapshot);
    let result = f(route, common.target);
    let after = common.proxy_pid.map(procfs::snapshot);
    let tcp: Map<String, Value> = procfs::tcp_counters()
        .into_iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(tcp_before.get(&k).copied().unwrap_or(0));
            (d > 0).then(|| (k, json!(d)))
        })
        .collect();
    let mut problems = Vec::new();
    let mut stalled = false;
    let mut code = ExitCode::SUCCESS;
    let mut summary = String::new();
    match result {
        Ok(m) => {
            summary = m.summary;
            if let Value::Object(o) = m.value {
                rec.extend(o);
            }
            stalled = m.stalled;
            problems.extend(m.problem);
            match (before, after) {
                (Some(Ok(b)), Some(Ok(a))) => {
                    let cpu = a.cpu_secs() - b.cpu_secs();
                    rec.insert("proxy_cpu_s".into(), json!(cpu));
                    rec.insert("proxy_procs".into(), json!(a.procs));
                    summary.push_str(&format!(", proxy CPU {cpu:.2} s"));
                    if let Some(gb) = m.per_gb.filter(|g| *g > 0.0) {
                        rec.insert("cpu_s_per_gb".into(), json!(cpu / gb));
                        summary.push_str(&format!(" ({:.3} s/GB)", cpu / gb));
                    }
                    if let Some(n) = m.per_conn.filter(|n| *n > 0.0) {
                        rec.insert("cpu_us_per_conn".into(), json!(cpu * 1e6 / n));
                        summary.push_str(&format!(" ({:.0} µs/conn)", cpu * 1e6 / n));
                    }
                    if let Some(n) = m.per_round_trip.filter(|n| *n > 0.0) {
                        rec.insert("cpu_us_per_round_trip".into(), json!(cpu * 1e6 / n));
                        summary.push_str(&format!(" ({:.1} µs/round trip)", cpu * 1e6 / n));
                    }
                }
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    problems.push(format!("proxy process: {e}"));
                }
                _ => {}
            }
        }
        Err(e) => {
            problems.push(format!("could not run: {e}"));
            code = ExitCode::FAILURE;
        }
    }
    if stalled {
        // Loopback does not lose packets, but a starved CPU delays ACKs and
        // window updates past the retransmission timer, whose backoff then
        // shows as a stall of a second or more even on a direct connection.
        let rto = tcp
            .get("TcpExt.TCPTimeouts")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if rto > 0 {
            problems.push(format!(
                "{rto} TCP retransmission timeouts in the namespace (CPU starvation delays ACKs)"
            ));
        }
    }
    rec.insert("tcp".into(), Value::Object(tcp));
    rec.insert("ok".into(), json!(problems.is_empty()));
    rec.insert("stalled".into(), json!(stalled));
    if !problems.is_empty() {
        rec.insert("problem".into(), json!(problems.join("; ")));
    }
    eprintln!(
        "    {mode} {case}, {}: {summary}{}",
        common.label,
        if problems.is_empty() {
            String::new()
        } else {
            format!(" -- PROBLEM: {}", problems.join("; "))
        }
    );
    println!("{}", Value::Object(rec));
    code
}

fn parse_profile(s: &str) -> Result<sixsocks_proto::v6::Profile, String> {
    sixsocks_proto::v6::Profile::from_setting_name(s)
        .ok_or_else(|| format!("unknown SOCKS 6 profile {s:?} (draft-05, draft-11 or ref-207)"))
}

/// Milliseconds to the first response byte of `reps` GETs (after
/// `warmup` unmeasured ones), each a new connection through `proxy`.
fn ttfb(
    proxy: &str,
    target: SocketAddr,
    tfo: bool,
    warmup: usize,
    reps: usize,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    use sixsocks_client::socks6::{Socks6Options, Socks6Session};
    use tokio::io::AsyncReadExt;
    let proxy: sixsocks_client::Proxy = proxy.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut session = Socks6Session::new(proxy.with_timeout(Duration::from_secs(30)));
        if tfo {
            session = session
                .with_options(Socks6Options::new().client_tfo(true))
                .with_tokens(64)?;
        }
        let get = format!("GET / HTTP/1.0\r\nHost: {target}\r\n\r\n");
        let mut out = Vec::new();
        for i in 0..warmup + reps {
            let start = std::time::Instant::now();
            let mut s = session.connect_with_data(target, get.as_bytes()).await?;
            let mut first = [0u8; 1];
            s.read_exact(&mut first).await?;
            if i >= warmup {
                out.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(out)
    })
}
