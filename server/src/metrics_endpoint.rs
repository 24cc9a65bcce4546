//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.x on its own
//! listener, one request per connection.
//!
//! Why our own and not the exporter's listener: the HTTP listener of
//! `metrics-exporter-prometheus` never timed out an unfinished request (2,000
//! held for 60 s cost 28 MB), did not limit its connections, so they spent
//! the proxy's descriptors outside any limit, and at the descriptor limit
//! its accept loop retried at once and logged every failure (2.98 million
//! lines in 4 s, and the proxy stopped answering). A scrape is one small
//! request every few seconds from one or two collectors, so this endpoint
//! can afford to be strict:
//!
//! * at most [`Limits::max_connections`] connections at once; more are
//!   closed at once and counted (`sixsocks_metrics_refused_total`, reason
//!   `max_connections`);
//! * the whole request head must arrive within [`Limits::head_timeout`] and
//!   fit in [`Limits::max_head`] bytes; the response must be written within
//!   [`Limits::write_timeout`];
//! * `GET /metrics` (a query string is ignored) is answered `200` with the
//!   page, `GET /health` with `OK`, any other path `404`, any other method
//!   `405`; the connection is
//!   closed after the one response (`Connection: close`);
//! * `accept` failures (EMFILE, ENFILE) pause the loop for a growing time
//!   (see [`crate::backoff`]) and are logged at most once a second with the
//!   count held back (see [`crate::rate_limited_log`]).
//!
//! The page itself comes from a render function (the binary passes the
//! installed Prometheus recorder's `render`), so that this crate needs no
//! exporter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::rate_limited_log::RateLimitedLog;

/// Connections served at once by default. A scrape takes milliseconds;
/// 16 leaves room for several collectors and a human with curl.
pub const MAX_CONNECTIONS: usize = 16;
/// Default time for the whole request head to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to write the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on the request head's size, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Header lines parsed; more is a malformed request (`400`).
const MAX_HEADERS: usize = 32;
/// After the response, how long to read and discard what the client still
/// sends before closing. Closing a socket with unread data sends a reset,
/// which can destroy the response before the client has read it.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// First and longest pause after a failed `accept`.
const ACCEPT_PAUSE_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_CAP: Duration = Duration::from_secs(1);

/// The endpoint's limits (the defaults are the constants above).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub write_timeout: Duration,
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            head_timeout: HEAD_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_head: MAX_HEAD,
        }
    }
}

/// What a complete request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`: the page.
    Metrics,
    /// `GET /health`: `OK` (the exporter's listener answered it, and the
    /// README promised it before this endpoint replaced that listener).
    Health,
    /// `GET` of any other path.
    NotFound,
    /// Any method but `GET`.
    MethodNotAllowed,
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
}

/// Why a connection ended without a successful response.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("request head not complete within {0:?}")]
    HeadTimeout(Duration),
    #[error("response not written within {0:?}")]
    WriteTimeout(Duration),
    #[error("connection closed before the request head was complete")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// The `reason` label it is counted under, if it is counted: a client
    /// that just goes away (or a reset) is not a refusal.
    fn refusal(&self) -> Option<&'static str> {
        match self {
            ServeError::Head(HeadError::TooLarge(_)) => Some("too_large"),
            ServeError::Head(HeadError::Malformed(_)) => Some("bad_request"),
            ServeError::HeadTimeout(_) | ServeError::WriteTimeout(_) => Some("timeout"),
            ServeError::Closed | ServeError::Io(_) => None,
        }
    }
}

/// Parse the bytes of a request head received so far (`buf`, never more
/// than `max_head` bytes): `Ok(None)` while it is incomplete and may still
/// grow, the route once it is complete.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<Route>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf).map_err(HeadError::Malformed)? {
        httparse::Status::Partial if buf.len() >= max_head => Err(HeadError::TooLarge(max_head)),
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(_) => {
            // A complete head has both; httparse fills them before it
            // returns Complete. Treated as malformed otherwise, not unwrapped.
            let (Some(method), Some(target)) = (req.method, req.path) else {
                return Err(HeadError::Malformed(httparse::Error::Token));
            };
            if method != "GET" {
                return Ok(Some(Route::MethodNotAllowed));
            }
            let path = target.split_once('?').map_or(target, |(p, _)| p);
            Ok(Some(match path {
                "/metrics" => Route::Metrics,
                "/health" => Route::Health,
                _ => Route::NotFound,
            }))
        }
    }
}

/// A whole response: status line, headers, body, `Connection: close`.
fn response(status: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The Prometheus text format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";
const PLAIN: &str = "text/plain; charset=utf-8";

/// The page or error a route gets.
fn respond(route: Route, render: &(dyn Fn() -> String + Send + Sync)) -> Vec<u8> {
    match route {
        Route::Metrics => response("200 OK", PROMETHEUS_TEXT, "", render().as_bytes()),
        Route::Health => response("200 OK", PLAIN, "", b"OK"),
        Route::NotFound => response(
            "404 Not Found",
            PLAIN,
            "",
            b"not found: the metrics are at /metrics\n",
        ),
        Route::MethodNotAllowed => response(
            "405 Method Not Allowed",
            PLAIN,
            "Allow: GET\r\n",
            b"method not allowed: use GET\n",
        ),
    }
}

/// The response to a refused head.
fn refuse(e: HeadError) -> Vec<u8> {
    match e {
        HeadError::TooLarge(_) => response(
            "431 Request Header Fields Too Large",
            PLAIN,
            "",
            b"request head too large\n",
        ),
        HeadError::Malformed(_) => response("400 Bad Request", PLAIN, "", b"bad request\n"),
    }
}

/// The page renderer: the installed recorder's `render`.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A bound metrics endpoint, ready to run.
pub struct MetricsEndpoint {
    listener: TcpListener,
    limits: Limits,
}

impl MetricsEndpoint {
    /// Bind `addr`. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, limits: Limits) -> std::io::Result<MetricsEndpoint> {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        Ok(MetricsEndpoint {
            listener: TcpListener::from_std(std)?,
            limits,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve on the current runtime until it shuts down.
    pub fn spawn(self, render: Render) -> JoinHandle<()> {
        tokio::spawn(self.run(render))
    }

    /// The accept loop.
    pub async fn run(self, render: Render) {
        let MetricsEndpoint { listener, limits } = self;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let over_limit = RateLimitedLog::default();
        let accept_errors = RateLimitedLog::default();
        let mut backoff = Backoff::new(ACCEPT_PAUSE_FIRST, ACCEPT_PAUSE_CAP);
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    backoff.reset();
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        drop(stream);
                        crate::metrics::metrics_refused("max_connections");
                        over_limit.log(|suppressed| {
                            tracing::warn!(
                                client = %peer,
                                max_connections = limits.max_connections,
                                suppressed,
                                "metrics endpoint: connection limit reached, connection closed"
                            )
                        });
                        continue;
                    };
                    let render = render.clone();
                    let limits = limits.clone();
                    tokio::spawn(async move {
                        match serve(stream, &limits, &*render).await {
                            Ok(route) => {
                                tracing::debug!(client = %peer, ?route, "metrics request")
                            }
                            Err(e) => {
                                if let Some(reason) = e.refusal() {
                                    crate::metrics::metrics_refused(reason);
                                }
                                tracing::debug!(client = %peer, error = %e, "metrics request failed");
                            }
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    let pause =
                        backoff.after_accept_error(&accept_errors, &e, "metrics endpoint: ");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// One connection: read the head (deadline, size cap), answer, close.
async fn serve(
    mut stream: TcpStream,
    limits: &Limits,
    render: &(dyn Fn() -> String + Send + Sync),
) -> Result<Route, ServeError> {
    let deadline = Instant::now() + limits.head_timeout;
    let mut buf = vec![0u8; limits.max_head];
    let mut filled = 0;
    let head = loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..]))
            .await
            .map_err(|_| ServeError::HeadTimeout(limits.head_timeout))??;
        if n == 0 {
            return Err(ServeError::Closed);
        }
        filled += n;
        match parse_head(&buf[..filled], limits.max_head) {
            Ok(Some(route)) => break Ok(route),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    drop(buf);
    let (bytes, result) = match head {
        Ok(route) => (respond(route, render), Ok(route)),
        Err(e) => (refuse(e), Err(ServeError::Head(e))),
    };
    tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| ServeError::WriteTimeout(limits.write_timeout))??;
    linger(&mut stream).await;
    result
}

/// Read and discard until the client closes, [`LINGER`] passes or
/// [`LINGER_BYTES`] were read, so that the close does not reset the
/// connection under a response the client has not read yet.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut total = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Result<Option<Route>, HeadError> {
        parse_head(buf, MAX_HEAD)
    }

    #[test]
    fn routes() {
        let get = |target: &str| parse(format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(get("/metrics"), Ok(Some(Route::Metrics)));
        assert_eq!(get("/metrics?x=1"), Ok(Some(Route::Metrics)));
        assert_eq!(get("/"), Ok(Some(Route::NotFound)));
        assert_eq!(get("/health"), Ok(Some(Route::Health)));
        assert_eq!(get("/metrics/"), Ok(Some(Route::NotFound)));
        assert_eq!(get("/METRICS"), Ok(Some(Route::NotFound)));
        assert_eq!(
            get("http://localhost/metrics"),
            Ok(Some(Route::NotFound)),
            "absolute form is not served"
        );
        for method in ["POST", "HEAD", "PUT", "DELETE", "OPTIONS", "get", "BREW"] {
            assert_eq!(
                parse(format!("{method} /metrics HTTP/1.1\r\n\r\n").as_bytes()),
                Ok(Some(Route::MethodNotAllowed)),
                "{method}"
            );
        }
        assert_eq!(
            parse(b"GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: */*\r\n\r\n"),
            Ok(Some(Route::Metrics))
        );
        // Bytes after the head (a body, a pipelined request) are ignored.
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\n\r\nGET /other HTTP/1.1\r\n\r\n"),
            Ok(Some(Route::Metrics))
        );
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        let full = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), Ok(None), "{n} bytes");
        }
        assert_eq!(parse(full), Ok(Some(Route::Metrics)));
        // Leading empty lines are skipped (RFC 9112 §2.2), still incomplete.
        assert_eq!(parse(b"\r\n\r\n"), Ok(None));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS ClientHello
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"GET /metrics FTP/1.1\r\n\r\n",
            b"GET /metrics\r\n\r\n", // HTTP/0.9
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nX: \x00\r\n\r\n",
            b"\x00\x01\x02\x03",
        ] {
            assert!(
                matches!(parse(bad), Err(HeadError::Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&many),
            Err(HeadError::Malformed(httparse::Error::TooManyHeaders))
        );
    }

    #[test]
    fn heads_that_reach_the_cap_unfinished_are_too_large() {
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&big), Err(HeadError::TooLarge(MAX_HEAD)));
        assert_eq!(parse(&big[..MAX_HEAD - 1]), Ok(None));
        // A request line alone that long, and empty lines forever.
        let mut line = b"GET /".to_vec();
        line.resize(MAX_HEAD, b'm');
        assert_eq!(parse(&line), Err(HeadError::TooLarge(MAX_HEAD)));
        assert_eq!(
            parse(&b"\r\n".repeat(MAX_HEAD / 2)),
            Err(HeadError::TooLarge(MAX_HEAD))
        );
        // A complete head that fills the buffer exactly is served.
        let mut exact = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&exact), Ok(Some(Route::Metrics)));
    }

    #[test]
    fn responses_close_the_connection() {
        let page = respond(Route::Metrics, &|| "x 1\n".to_string());
        assert_eq!(
            page,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
              Content-Length: 4\r\nConnection: close\r\n\r\nx 1\n"
        );
        let r = String::from_utf8(respond(Route::MethodNotAllowed, &String::new)).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.contains("\r\nAllow: GET\r\n") && r.contains("Connection: close"));
        let r = String::from_utf8(refuse(HeadError::TooLarge(MAX_HEAD))).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    }

    /// Start an endpoint with `limits` on a loopback port.
    async fn start(limits: Limits) -> SocketAddr {
        let e = MetricsEndpoint::bind("127.0.0.1:0".parse().unwrap(), limits).unwrap();
        let addr = e.local_addr().unwrap();
        e.spawn(Arc::new(|| "sixsocks_test 1\n".to_string()));
        addr
    }

    /// Send `request`, read to the end; what was read (an endpoint over
    /// its cap resets some connections: then less or nothing).
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        if s.write_all(request).await.is_ok() {
            let _ = s.read_to_end(&mut out).await;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_over_loopback() {
        let addr = start(Limits::default()).await;
        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nsixsocks_test 1\n"), "{r}");
        let r = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = exchange(addr, b"hello\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        let r = exchange(addr, &vec![b'G'; MAX_HEAD + 100]).await;
        assert!(r.starts_with("HTTP/1.1 4"), "{r}");
    }

    /// With the clock paused, tokio moves it on whenever every task waits:
    /// the deadline passes without the test waiting for it.
    #[tokio::test(start_paused = true)]
    async fn unfinished_heads_are_closed_at_the_deadline() {
        let addr = start(Limits::default()).await;
        for sent in [
            &b""[..],
            b"GET /met",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(sent).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            assert!(out.is_empty(), "{out:?}");
        }
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once() {
        let addr = start(Limits {
            max_connections: 2,
            ..Limits::default()
        })
        .await;
        let held = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        // Both are accepted and hold their slots once a scrape is refused.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        let _ = extra.read_to_end(&mut out).await;
        assert!(out.is_empty(), "{out:?}");
        drop(held);
        // The slots come back when the held connections end.
        let r = loop {
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if !r.is_empty() {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    }
}
