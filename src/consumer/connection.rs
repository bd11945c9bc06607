//! The connection under a consumer: the byte stream an accepted handshake hands over (hyper's
//! upgrade, or the testing module's in-memory pipe), private to the consumer module.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::SinkExt;
use http::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::WebSocketError;
use crate::application::{HandshakeResponse, PendingHandshake, Upgrade};

/// The byte stream under an accepted WebSocket.
pub(crate) enum Stream {
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
    InProcess(DuplexStream),
}

/// An accepted WebSocket's byte stream with the connection's write buffer: tungstenite hands
/// each frame over as it is made (its own buffer is off), frames gather here, and a flush writes
/// them with one write. The buffer is freed once written out, so an idle connection keeps none
/// however large its last burst was (tungstenite keeps its buffer's largest size for good).
pub(crate) struct Io {
    stream: Stream,
    /// Frames not yet written out; `written` bytes of them already are.
    out: Vec<u8>,
    written: usize,
    /// Past this many gathered bytes, a new frame waits until the buffer is written out
    /// ([`ServerConfig::write_buffer_size`](crate::ServerConfig::write_buffer_size)).
    limit: usize,
    /// How many bytes the last write-out carried: the next buffer starts that large.
    last: usize,
}

impl Io {
    pub(crate) fn new(stream: Stream, limit: usize) -> Self {
        Self {
            stream,
            out: Vec::new(),
            written: 0,
            limit: limit.max(1),
            last: 0,
        }
    }

    /// Whether frames are gathered and not yet written out.
    pub(crate) fn has_pending_writes(&self) -> bool {
        self.written < self.out.len()
    }

    /// Writes out everything gathered, then frees the buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let pending = &self.out[self.written..];
            let n = match &mut self.stream {
                Stream::Hyper(io) => ready!(Pin::new(io).poll_write(cx, pending))?,
                Stream::InProcess(io) => ready!(Pin::new(io).poll_write(cx, pending))?,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.last = self.out.len().min(self.limit);
        self.out = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Hyper(io) => Pin::new(io).poll_read(cx, buf),
            Stream::InProcess(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= this.limit {
            ready!(this.poll_write_out(cx))?;
        }
        if this.out.capacity() == 0 {
            this.out.reserve(this.last.max(buf.len()));
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        match &mut this.stream {
            Stream::Hyper(io) => Pin::new(io).poll_flush(cx),
            Stream::InProcess(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        match &mut this.stream {
            Stream::Hyper(io) => Pin::new(io).poll_shutdown(cx),
            Stream::InProcess(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// An accepted WebSocket.
pub(crate) type Socket = WebSocketStream<Io>;

/// Answers 101 and waits for hyper to hand over the upgraded connection.
pub(crate) async fn accept(
    pending: PendingHandshake,
    subprotocol: Option<String>,
    headers: HeaderMap,
) -> Result<Socket, WebSocketError> {
    pending
        .respond
        .send(HandshakeResponse::Accept {
            subprotocol,
            headers,
        })
        .map_err(|_| WebSocketError::Closed)?;
    let stream = match pending.upgrade {
        Upgrade::Hyper(upgrade) => Stream::Hyper(TokioIo::new(upgrade.await.map_err(|error| {
            // The client left before the switch, or the server carrying the request does not
            // hand connections over (hyper's `serve_connection` without `with_upgrades`).
            tracing::warn!(target: "switchboard::server", %error, "the connection was not handed over after 101 (a hyper host needs `with_upgrades()`)");
            WebSocketError::Closed
        })?)),
        Upgrade::InProcess(pipe) => Stream::InProcess(pipe),
    };
    let io = Io::new(stream, pending.env.websocket.write_buffer_size);
    // Frames go straight to `Io`, which gathers them: tungstenite's own buffer stays empty.
    let config = pending.env.websocket.write_buffer_size(0);
    Ok(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
}

/// The longest frame [`feed`] makes, in payload bytes.
pub(crate) const MAX_FRAME: usize = 1 << 10;

/// Buffers `message` in `socket`. A text or binary message longer than [`MAX_FRAME`] goes as
/// fragments of that size (RFC 6455 §5.4, which every client reassembles; the payload is shared,
/// not copied): tungstenite formats each frame in a buffer that keeps the largest size it ever
/// reached, for the connection's life, so frames stay small.
pub(crate) async fn feed(
    socket: &mut Socket,
    message: tungstenite::Message,
) -> Result<(), tungstenite::Error> {
    let fragment = MAX_FRAME;
    let (payload, data) = match message {
        tungstenite::Message::Text(text) if text.len() > fragment => {
            (Bytes::from(text), Data::Text)
        }
        tungstenite::Message::Binary(bytes) if bytes.len() > fragment => (bytes, Data::Binary),
        message => return socket.feed(message).await,
    };
    let mut opcode = OpCode::Data(data);
    let mut start = 0;
    while start < payload.len() {
        let end = payload.len().min(start + fragment);
        let frame = Frame::message(payload.slice(start..end), opcode, end == payload.len());
        socket.feed(tungstenite::Message::Frame(frame)).await?;
        opcode = OpCode::Data(Data::Continue);
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_write_buffer_gathers_frames_writes_them_once_and_is_freed() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = Io::new(Stream::InProcess(near), 4096);
        for _ in 0..3 {
            io.write_all(&[7; 1000]).await.unwrap();
        }
        assert_eq!(io.out.len(), 3000, "gathered, not written");
        io.flush().await.unwrap();
        assert_eq!(io.out.capacity(), 0, "freed once written");
        let mut got = vec![0; 3000];
        far.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 7));
        // Past the limit, the next write first writes out what was gathered.
        for _ in 0..6 {
            io.write_all(&[1; 1000]).await.unwrap();
        }
        assert_eq!(io.out.len(), 1000, "5,000 went out when the sixth came");
        io.flush().await.unwrap();
        let mut got = vec![0; 6000];
        far.read_exact(&mut got).await.unwrap();
    }
}
