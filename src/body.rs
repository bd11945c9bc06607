//! [`Body`]: the HTTP body type switchboard hands to HTTP applications and answers with.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;

/// A boxed error, as HTTP services and bodies return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP request or response body of any kind, boxed: what
/// [`ProtocolTypeRouter::http`](crate::routing::ProtocolTypeRouter::http) services receive
/// (whichever server carried the request: [`serve`](crate::serve) or a host such as
/// `axum::serve`), and what [`AppService`](crate::AppService) answers with.
///
/// It is an [`http_body::Body`] of [`Bytes`] frames; an axum `Router` takes it as it is.
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// Boxes any body whose frames are `Bytes`.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self(body.map_err(Into::into).boxed_unsync())
    }

    /// A body with no bytes.
    pub fn empty() -> Self {
        Self::new(http_body_util::Empty::new())
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::new(http_body_util::Full::new(Bytes::from(text)))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::new(http_body_util::Full::new(Bytes::from_static(
            text.as_bytes(),
        )))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::new(http_body_util::Full::new(bytes))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
