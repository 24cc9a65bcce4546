//! `sixsocks connect` (like `nc` through a proxy) and `sixsocks resolve`.

use std::net::IpAddr;

use clap::Args;
use sixsocks_client::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The proxy: socks4://, socks4a://, socks5:// (names resolved here),
    /// socks5h:// (names resolved by the proxy), socks6:// (SOCKS 6:
    /// request, credentials and the first bytes of stdin in one flight;
    /// draft -11 unless ?profile=draft-05 or ?profile=ref-207), with
    /// optional user:pass@.
    #[arg(
        long,
        env = "SIXSOCKS_PROXY",
        default_value = "socks5h://127.0.0.1:1080"
    )]
    pub proxy: String,

    /// Seconds to wait for the proxy and its reply.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,

    /// The SOCKS 6 wire profile (draft-05, draft-11 or ref-207), whatever
    /// the URL's ?profile= says [default: the URL's, else draft-11].
    #[arg(long, value_name = "PROFILE", value_parser = parse_profile)]
    pub socks6_profile: Option<sixsocks_proto::v6::Profile>,

    /// Where to connect: HOST:PORT (IPv6 in brackets).
    pub target: String,
}

fn parse_profile(s: &str) -> std::result::Result<sixsocks_proto::v6::Profile, String> {
    sixsocks_proto::v6::Profile::from_setting_name(s)
        .ok_or_else(|| format!("unknown SOCKS 6 profile {s:?} (draft-05, draft-11 or ref-207)"))
}

#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// The proxy (socks4a://, socks5://, socks5h://; reverse needs SOCKS5).
    #[arg(
        long,
        env = "SIXSOCKS_PROXY",
        default_value = "socks5h://127.0.0.1:1080"
    )]
    pub proxy: String,

    /// Reverse lookup: NAME is an IP address (Tor's RESOLVE_PTR).
    #[arg(short = 'x', long)]
    pub reverse: bool,

    /// The name to resolve (or, with -x, the address).
    pub name: String,
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// How long `connect` over SOCKS 6 waits for stdin before sending the
/// request: what stdin has by then (up to 8192 bytes) goes with the request
/// as initial data. Piped input is there at once; a person typing is not
/// made to wait noticeably.
const INITIAL_DATA_WAIT: std::time::Duration = std::time::Duration::from_millis(30);

fn proxy(url: &str, timeout: u64) -> Result<Proxy> {
    Ok(Proxy::parse(url)?.with_timeout(std::time::Duration::from_secs(timeout)))
}

/// Split `HOST:PORT`, accepting `[v6]:port`.
fn host_port(s: &str) -> Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s}: expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{s}: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s}: empty host").into());
    }
    Ok((host.to_string(), port))
}

pub fn run_connect(args: ConnectArgs) -> Result<()> {
    let mut proxy = proxy(&args.proxy, args.timeout)?;
    if let Some(p) = args.socks6_profile {
        proxy = proxy.with_socks6_profile(p);
    }
    let (host, port) = host_port(&args.target)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt
        .block_on(async move {
            // One stdin for the whole session: a read cut short by the wait
            // below completes on the next read of the same handle.
            let mut stdin = tokio::io::stdin();
            let mut initial = Vec::new();
            let mut stdin_ended = false;
            if proxy.scheme.is_socks6() {
                let mut buf = vec![0u8; sixsocks_proto::v6::MAX_INITIAL_DATA];
                match tokio::time::timeout(INITIAL_DATA_WAIT, stdin.read(&mut buf)).await {
                    Ok(Ok(0)) => stdin_ended = true,
                    Ok(Ok(n)) => initial.extend_from_slice(&buf[..n]),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {}
                }
            }
            let stream = if initial.is_empty() {
                sixsocks_client::connect(&proxy, (host.as_str(), port)).await
            } else {
                sixsocks_client::connect_with_data(&proxy, (host.as_str(), port), &initial).await
            }
            .map_err(std::io::Error::other)?;
            let (mut rd, mut wr) = tokio::io::split(stream);
            let upload = async {
                if stdin_ended {
                    wr.shutdown().await?;
                    return Ok::<(), std::io::Error>(());
                }
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = stdin.read(&mut buf).await?;
                    if n == 0 {
                        // Pass our EOF on, and keep reading the answer.
                        wr.shutdown().await?;
                        return Ok::<(), std::io::Error>(());
                    }
                    wr.write_all(&buf[..n]).await?;
                }
            };
            let download = async {
                let mut stdout = tokio::io::stdout();
                tokio::io::copy(&mut rd, &mut stdout).await?;
                stdout.flush().await?;
                Ok::<(), std::io::Error>(())
            };
            tokio::pin!(upload);
            tokio::pin!(download);
            // The session ends when the target is done sending; stdin may stay open.
            tokio::select! {
                r = &mut download => r?,
                r = &mut upload => {
                    r?;
                    // stdin ended first: the same download (with whatever it
                    // holds) decides when we are done.
                    (&mut download).await?;
                }
            }
            Ok::<(), std::io::Error>(())
        })
        .or_else(|e| match e.kind() {
            // Whoever reads our stdout stopped reading (`| head`): not an error.
            std::io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(e),
        })?)
}

pub fn run_resolve(args: ResolveArgs) -> Result<()> {
    let proxy = proxy(&args.proxy, 30)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if args.reverse {
            let ip: IpAddr = args
                .name
                .parse()
                .map_err(|_| format!("{}: not an IP address", args.name))?;
            println!("{}", sixsocks_client::resolve_ptr(&proxy, ip).await?);
        } else {
            println!("{}", sixsocks_client::resolve(&proxy, &args.name).await?);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn targets_parse() {
        assert_eq!(
            host_port("example.com:80").unwrap(),
            ("example.com".into(), 80)
        );
        assert_eq!(host_port("[::1]:443").unwrap(), ("::1".into(), 443));
        assert!(host_port("nohost").is_err());
        assert!(host_port(":80").is_err());
        assert!(host_port("h:99999").is_err());
    }
}
