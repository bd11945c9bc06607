//! The connection under a consumer: the byte stream an accepted handshake hands over (hyper's
//! upgrade, or the testing module's in-memory pipe), private to the consumer module.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
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

/// The longest frame [`Write`] makes, in payload bytes.
pub(crate) const MAX_FRAME: usize = 1 << 10;

/// What a [`Write`] still has to hand to the socket.
enum Outgoing {
    Nothing,
    Whole(tungstenite::Message),
    /// The rest of a message sent as fragments: `payload[at..]`, the next frame's opcode.
    Fragments {
        payload: Bytes,
        at: usize,
        opcode: OpCode,
    },
}

impl Outgoing {
    /// A text or binary message longer than [`MAX_FRAME`] goes as fragments of that size (RFC
    /// 6455 §5.4, which every client reassembles; the payload is shared, not copied):
    /// tungstenite formats each frame in a buffer that keeps the largest size it ever reached,
    /// for the connection's life, so frames stay small.
    fn new(message: tungstenite::Message) -> Self {
        let (payload, data) = match message {
            tungstenite::Message::Text(text) if text.len() > MAX_FRAME => {
                (Bytes::from(text), Data::Text)
            }
            tungstenite::Message::Binary(bytes) if bytes.len() > MAX_FRAME => (bytes, Data::Binary),
            message => return Self::Whole(message),
        };
        Self::Fragments {
            payload,
            at: 0,
            opcode: OpCode::Data(data),
        }
    }

    fn next_frame(&mut self) -> Option<tungstenite::Message> {
        match std::mem::replace(self, Self::Nothing) {
            Self::Nothing => None,
            Self::Whole(message) => Some(message),
            Self::Fragments {
                payload,
                at,
                opcode,
            } => {
                let end = payload.len().min(at + MAX_FRAME);
                let last = end == payload.len();
                let frame = Frame::message(payload.slice(at..end), opcode, last);
                if !last {
                    *self = Self::Fragments {
                        payload,
                        at: end,
                        opcode: OpCode::Data(Data::Continue),
                    };
                }
                Some(tungstenite::Message::Frame(frame))
            }
        }
    }
}

/// Hands a message to the socket (or nothing), then flushes if asked; gives up after
/// `timeout` of waiting for the socket (`None`: the write timed out).
///
/// A future of its own rather than an `async fn` around `feed` and `tokio::time::timeout`: its
/// size counts in every connection's future (the runner awaits it), and its timer is made only
/// when the socket makes it wait, not on every write.
pub(crate) struct Write<'a> {
    socket: &'a mut Socket,
    outgoing: Outgoing,
    flush: bool,
    timeout: Option<std::time::Duration>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<'a> Write<'a> {
    /// Buffers `message` without flushing.
    pub(crate) fn feed(
        socket: &'a mut Socket,
        message: tungstenite::Message,
        timeout: Option<std::time::Duration>,
    ) -> Self {
        Self::new(socket, Outgoing::new(message), false, timeout)
    }

    /// Buffers `message` and flushes.
    pub(crate) fn send(
        socket: &'a mut Socket,
        message: tungstenite::Message,
        timeout: Option<std::time::Duration>,
    ) -> Self {
        Self::new(socket, Outgoing::new(message), true, timeout)
    }

    /// Flushes what was buffered.
    pub(crate) fn flush(socket: &'a mut Socket, timeout: Option<std::time::Duration>) -> Self {
        Self::new(socket, Outgoing::Nothing, true, timeout)
    }

    fn new(
        socket: &'a mut Socket,
        outgoing: Outgoing,
        flush: bool,
        timeout: Option<std::time::Duration>,
    ) -> Self {
        Self {
            socket,
            outgoing,
            flush,
            timeout,
            deadline: None,
        }
    }

    /// The socket is not ready: wait, unless the deadline (started now if need be) has passed.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(), tungstenite::Error>>> {
        let Some(after) = self.timeout else {
            return Poll::Pending;
        };
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Future for Write<'_> {
    type Output = Option<Result<(), tungstenite::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        use futures_util::Sink;
        let this = self.get_mut();
        while !matches!(this.outgoing, Outgoing::Nothing) {
            match Pin::new(&mut *this.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                Poll::Pending => return this.wait(cx),
            }
            if let Some(frame) = this.outgoing.next_frame() {
                if let Err(error) = Pin::new(&mut *this.socket).start_send(frame) {
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
        if this.flush {
            match Pin::new(&mut *this.socket).poll_flush(cx) {
                Poll::Ready(result) => return Poll::Ready(Some(result)),
                Poll::Pending => return this.wait(cx),
            }
        }
        Poll::Ready(Some(Ok(())))
    }
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
