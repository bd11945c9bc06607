//! Which HTTP a connection speaks: HTTP/2's preface or anything else (RFC 9113 §3.4), read from
//! its first bytes, which are then given back to the HTTP/1.1 or HTTP/2 server unread.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_util::task::TaskTracker;

/// What a client sends first over HTTP/2 (RFC 9113 §3.4), TLS or not.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Speaks {
    Http1,
    Http2,
}

/// Reads from `io` until its first bytes are HTTP/2's preface or cannot be (an HTTP/1.1 request
/// line differs at its first byte, so one read decides almost always). The bytes read are
/// replayed by the returned stream. An end of stream before a decision counts as HTTP/1.1, which
/// then sees it.
///
/// # Errors
///
/// The socket's read errors.
pub(super) async fn sniff<S>(mut io: S) -> io::Result<(Speaks, Prefixed<S>)>
where
    S: AsyncRead + Unpin,
{
    // A request head usually arrives whole: one read takes it, and HTTP/1.1 gets it from here.
    let mut prefix = Vec::with_capacity(1024);
    let speaks = loop {
        if io.read_buf(&mut prefix).await? == 0 {
            break Speaks::Http1;
        }
        let compared = prefix.len().min(PREFACE.len());
        if prefix[..compared] != PREFACE[..compared] {
            break Speaks::Http1;
        }
        if compared == PREFACE.len() {
            break Speaks::Http2;
        }
        if prefix.len() == prefix.capacity() {
            prefix.reserve(PREFACE.len());
        }
    };
    Ok((
        speaks,
        Prefixed {
            prefix,
            read: 0,
            io,
        },
    ))
}

/// A stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub(super) struct Prefixed<S> {
    prefix: Vec<u8>,
    read: usize,
    io: S,
}

impl<S> Prefixed<S> {
    /// `io` with nothing read from it yet.
    pub(super) fn empty(io: S) -> Self {
        Self {
            prefix: Vec::new(),
            read: 0,
            io,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                // Replayed: free it, a long-lived WebSocket keeps no copy.
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body that keeps its HTTP/2 stream counted as open until it is sent (or dropped):
/// an event stream is activity, however long it lasts.
#[derive(Debug)]
pub(super) struct CountedBody {
    pub(super) body: crate::body::Body,
    pub(super) _stream: super::stats::ActiveStream,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Runs HTTP/2's per-stream tasks on the server's task tracker, so that graceful shutdown waits
/// for them as for the WebSockets they carry.
#[derive(Debug, Clone)]
pub(super) struct TrackedExecutor(pub(super) TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(sent: &[&[u8]]) -> (Speaks, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        for part in sent {
            client.write_all(part).await.unwrap();
        }
        drop(client);
        let (speaks, mut stream) = sniff(server).await.unwrap();
        let mut replayed = Vec::new();
        stream.read_to_end(&mut replayed).await.unwrap();
        (speaks, replayed)
    }

    #[tokio::test]
    async fn tells_the_preface_from_a_request_and_replays_every_byte() {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniffed(&[request]).await, (Speaks::Http1, request.to_vec()));
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        assert_eq!(sniffed(&[&h2]).await, (Speaks::Http2, h2.clone()));
        // The preface in pieces, and a request that starts like it.
        assert_eq!(
            sniffed(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\n"]).await.0,
            Speaks::Http2
        );
        assert_eq!(
            sniffed(&[b"PRI * HTTP/1.1\r\n\r\n"]).await,
            (Speaks::Http1, b"PRI * HTTP/1.1\r\n\r\n".to_vec())
        );
        assert_eq!(sniffed(&[b"PR"]).await, (Speaks::Http1, b"PR".to_vec()));
        assert_eq!(sniffed(&[]).await, (Speaks::Http1, Vec::new()));
    }
}
