//! HTTP-resistance: a browser configured to use the SOCKS port as an HTTP
//! proxy gets a short page explaining the mistake instead of a silent close.

/// How much of an HTTP request head we read (to find its end) before we
/// answer anyway.
pub const MAX_HTTP_HEAD: usize = 8192;

/// Whether a first byte looks like the start of an HTTP request: an ASCII
/// capital letter (GET, HEAD, POST, PUT, CONNECT, OPTIONS, DELETE, ...).
/// No SOCKS version byte is a letter.
pub fn looks_like_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

/// Whether `buf` holds a complete request head (ends with an empty line).
pub fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

const BODY: &str = "<!DOCTYPE html>\n<html><head><title>This is a SOCKS proxy, not an HTTP proxy</title></head>\n\
<body><h1>This is a SOCKS proxy, not an HTTP proxy</h1>\n\
<p>Your program sent an HTTP request to sixsocks, which speaks SOCKS (versions 4, 4a and 5).\n\
It looks like it is configured to use this address as an <em>HTTP</em> proxy.</p>\n\
<p>Configure it to use a <em>SOCKS</em> proxy instead (for example, in curl:\n\
<code>--socks5-hostname host:port</code>, or <code>socks5h://host:port</code> as the proxy URL).</p>\n\
</body></html>\n";

/// The complete HTTP response: status line, headers with a correct
/// Content-Length, and the page. The server closes after sending it.
pub fn response() -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.0 501 Not Implemented: this is a SOCKS proxy\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    out.extend_from_slice(BODY.as_bytes());
    out
}
