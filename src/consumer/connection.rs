//! The connection under a consumer: the byte stream an accepted handshake hands over (hyper's
//! upgrade, or the testing module's in-memory pipe), private to the consumer module.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::WebSocketError;
use crate::application::{HandshakeResponse, PendingHandshake, Upgrade};

/// The byte stream under an accepted WebSocket.
pub(crate) enum Io {
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
    InProcess(DuplexStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Hyper(io) => Pin::new(io).poll_read(cx, buf),
            Io::InProcess(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Hyper(io) => Pin::new(io).poll_write(cx, buf),
            Io::InProcess(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Hyper(io) => Pin::new(io).poll_flush(cx),
            Io::InProcess(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Hyper(io) => Pin::new(io).poll_shutdown(cx),
            Io::InProcess(io) => Pin::new(io).poll_shutdown(cx),
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
    let io = match pending.upgrade {
        Upgrade::Hyper(upgrade) => Io::Hyper(TokioIo::new(upgrade.await.map_err(|error| {
            // The client left before the switch, or the server carrying the request does not
            // hand connections over (hyper's `serve_connection` without `with_upgrades`).
            tracing::warn!(target: "switchboard::server", %error, "the connection was not handed over after 101 (a hyper host needs `with_upgrades()`)");
            WebSocketError::Closed
        })?)),
        Upgrade::InProcess(pipe) => Io::InProcess(pipe),
    };
    Ok(WebSocketStream::from_raw_socket(io, Role::Server, Some(pending.env.websocket)).await)
}
