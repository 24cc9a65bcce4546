//! [`SocksStream`]: a connection through a proxy, after a successful handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use sixsocks_proto::TargetAddr;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream to the target through the proxy.
///
/// Bytes the proxy sent right behind its reply (the target may speak first,
/// and one read can hold the reply and more) belong to the application:
/// reads return them first, then read from the connection.
#[derive(Debug)]
pub struct SocksStream<S = TcpStream> {
    inner: S,
    leftover: Vec<u8>,
    pos: usize,
    bound: TargetAddr,
    /// What a SOCKS 6 handshake learned (boxed: most streams are not SOCKS 6).
    socks6: Option<Box<crate::socks6_info::Socks6Info>>,
}

impl<S> SocksStream<S> {
    pub(crate) fn new(inner: S, leftover: Vec<u8>, bound: TargetAddr) -> Self {
        SocksStream {
            inner,
            leftover,
            pos: 0,
            bound,
            socks6: None,
        }
    }

    pub(crate) fn with_socks6(mut self, info: crate::socks6_info::Socks6Info) -> Self {
        self.socks6 = Some(Box::new(info));
        self
    }

    /// For a SOCKS 6 connection: what the handshake learned (the
    /// authentication method, the token spent, the stack options the proxy
    /// reports it applied, whether TCP Fast Open carried the request).
    /// `None` for SOCKS4/5.
    pub fn socks6_info(&self) -> Option<&crate::socks6_info::Socks6Info> {
        self.socks6.as_deref()
    }

    /// The address in the proxy's reply: the address the proxy bound for
    /// this connection (often `0.0.0.0:0` when the proxy does not say).
    pub fn bound_addr(&self) -> &TargetAddr {
        &self.bound
    }

    /// Bytes received after the reply that have not been read yet.
    pub fn leftover(&self) -> &[u8] {
        &self.leftover[self.pos..]
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The underlying stream. Reading from it directly skips any
    /// [`leftover`](Self::leftover) bytes.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The underlying stream and the bytes received after the reply that
    /// have not been read yet (they come before anything read from the
    /// stream).
    pub fn into_inner(mut self) -> (S, Vec<u8>) {
        self.leftover.drain(..self.pos);
        (self.inner, self.leftover)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SocksStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.leftover.len() {
            let rest = &this.leftover[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.leftover.len() {
                this.leftover = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SocksStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn leftover_comes_first_even_with_tiny_reads() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = SocksStream::new(a, b"hello".to_vec(), TargetAddr::unspecified());
        b.write_all(b" world").await.unwrap();
        drop(b);
        let mut small = [0u8; 2];
        let n = s.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"he");
        assert_eq!(s.leftover(), b"llo");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"llo world");
    }

    #[tokio::test]
    async fn into_inner_returns_unread_leftover() {
        let (a, _b) = tokio::io::duplex(64);
        let mut s = SocksStream::new(a, b"abcdef".to_vec(), TargetAddr::unspecified());
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        let (_inner, left) = s.into_inner();
        assert_eq!(left, b"cdef");
    }
}
