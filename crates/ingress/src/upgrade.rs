//! Protocol switches (HTTP/1.1 `101 Switching Protocols`, HTTP/2 extended CONNECT) on the client's side, whichever
//! server the connection has: hyper's (HTTP/2) keeps its handle in the request's extensions, and so does weft's own
//! HTTP/1.1 server (`h1`). Once the response has gone out, the handle gives the connection's byte stream.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// A connection's byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client's connection after a protocol switch.
pub struct Upgraded(Box<dyn Io>);

impl Upgraded {
    pub(crate) fn new(io: impl Io + 'static) -> Upgraded {
        Upgraded(Box::new(io))
    }
}

/// Why no connection came of a protocol switch.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error("the connection ended before switching protocols")]
    Gone,
}

/// What gives the connection once the switch's response has been written.
pub struct OnUpgrade(Pending);

enum Pending {
    Hyper(hyper::upgrade::OnUpgrade),
    Own(oneshot::Receiver<Upgraded>),
}

/// The handle weft's HTTP/1.1 server puts in a request's extensions (they must be `Clone`; only one takes it).
#[derive(Clone)]
pub(crate) struct Own(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl Own {
    /// The handle for a request, and the sender its connection gives itself to after the 101.
    pub(crate) fn new() -> (Own, oneshot::Sender<Upgraded>) {
        let (sender, receiver) = oneshot::channel();
        (Own(Arc::new(Mutex::new(Some(receiver)))), sender)
    }
}

/// The protocol switch handle of `request`: weft's HTTP/1.1 server's, else hyper's.
pub fn on<B>(request: &mut http::Request<B>) -> OnUpgrade {
    let own = request
        .extensions_mut()
        .remove::<Own>()
        .and_then(|own| own.0.lock().ok()?.take());
    match own {
        Some(receiver) => OnUpgrade(Pending::Own(receiver)),
        None => OnUpgrade(Pending::Hyper(hyper::upgrade::on(request))),
    }
}

impl OnUpgrade {
    pub async fn wait(self) -> Result<Upgraded, UpgradeError> {
        match self.0 {
            Pending::Hyper(pending) => Ok(Upgraded::new(hyper_util::rt::TokioIo::new(pending.await?))),
            Pending::Own(pending) => pending.await.map_err(|_| UpgradeError::Gone),
        }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
