//! The opaque error that consumer handlers return, so that `?` works on any error.

use std::fmt;

/// The error a consumer handler returns: any error, boxed, so that `?` works in handler bodies.
///
/// Like `anyhow::Error`, it converts from every type that implements [`std::error::Error`], and for
/// the same reason does not implement that trait itself (a type that did would have to convert
/// from itself twice, which Rust forbids): `?` on any error in a handler is worth more. Where a
/// `std::error::Error` is needed, [`into_inner`](Self::into_inner) gives the boxed original, and
/// `Box<dyn std::error::Error + Send + Sync>` converts from it with `?`. When a handler returns it, the connection
/// is closed with [`close_code::INTERNAL_ERROR`](crate::websocket::close_code::INTERNAL_ERROR)
/// (1011) and the error is logged at `ERROR` on the target `switchboard::consumer`.
pub struct Error {
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// `Result` with switchboard's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error made of a message alone, for handler bodies that have no error type of their own.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            inner: message.to_string().into(),
        }
    }

    /// The wrapped error, e.g. to `downcast_ref` it back to its concrete type.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// The wrapped error, owned (a `std::error::Error` to hand to code that wants one).
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.inner
    }
}

impl From<Error> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(error: Error) -> Self {
        error.inner
    }
}

impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Error {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl<E> From<E> for Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self {
            inner: Box::new(error),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)?;
        let mut source = self.inner.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
