//! Bodies on their way through the proxy: the boxed body type both directions use, a request's body as either
//! server gives it (`Incoming`), a body that fails when the next chunk takes longer than a timeout (nginx's proxy
//! read and send timeouts are between two successive reads or writes, not for the whole body), and one that tells
//! when it has all been taken (the wait for the response starts then, not while a long upload is still on its way;
//! a pooled connection goes back then).

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A request's body as its server gives it: hyper's (HTTP/2) or weft's own HTTP/1.1 server's (`h1`).
pub enum Incoming {
    Hyper(hyper::body::Incoming),
    H1(crate::h1::Body),
}

impl HttpBody for Incoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Incoming::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Incoming::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Incoming::Hyper(body) => body.is_end_stream(),
            Incoming::H1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Incoming::Hyper(body) => body.size_hint(),
            Incoming::H1(body) => body.size_hint(),
        }
    }
}

/// The error of a body whose next chunk did not come in time.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct Stalled(pub Duration);

/// `inner`, failing with `Stalled` when a chunk (or the end) takes longer than `timeout` after the previous one.
/// The timer is made only when the body first has to wait: a small body that is there at once (most responses)
/// costs no timer at all.
pub struct Idle<B> {
    inner: B,
    timeout: Duration,
    /// When the previous chunk came (or the body was made).
    since: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> Idle<B> {
    pub fn new(inner: B, timeout: Duration) -> Idle<B> {
        Idle {
            inner,
            timeout,
            since: Instant::now(),
            timer: None,
        }
    }
}

impl<B> HttpBody for Idle<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.since = Instant::now();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.since + this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Stalled(this.timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `inner`, calling `done` once its end has been taken (at once for a body already at its end; never for one that
/// fails): the wait for a response starts when a request body has all gone, and a pooled connection goes back
/// when its response body has.
pub struct OnEnd<B, F: FnOnce()> {
    inner: B,
    done: Option<F>,
}

impl<B: HttpBody, F: FnOnce()> OnEnd<B, F> {
    pub fn new(inner: B, done: F) -> OnEnd<B, F> {
        let mut body = OnEnd {
            inner,
            done: Some(done),
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done();
        }
    }
}

impl<B, F> HttpBody for OnEnd<B, F>
where
    B: HttpBody<Data = Bytes> + Unpin,
    F: FnOnce() + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(),
            Poll::Ready(Some(Err(_))) => this.done = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// One chunk, then nothing ever again.
    struct OneThenSilence(bool);

    impl HttpBody for OneThenSilence {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"a")))))
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_and_one_that_flows_does_not() {
        let timeout = Duration::from_millis(50);
        let mut stalls = Idle::new(OneThenSilence(false), timeout);
        assert!(stalls.frame().await.unwrap().is_ok());
        let start = Instant::now();
        let error = stalls.frame().await.unwrap().unwrap_err();
        assert!(error.is::<Stalled>(), "{error}");
        assert!(start.elapsed() >= timeout);
        let flows = Idle::new(Full::new(Bytes::from_static(b"all")), timeout);
        assert_eq!(flows.collect().await.unwrap().to_bytes(), "all");
    }

    #[tokio::test]
    async fn the_end_of_a_body_is_told_once_it_is_taken() {
        let told = |sent: &Arc<Notify>| {
            let sent = sent.clone();
            move || sent.notify_one()
        };
        let sent = Arc::new(Notify::new());
        let mut body = OnEnd::new(OneThenSilence(false), told(&sent));
        assert!(body.frame().await.unwrap().is_ok());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sent.notified())
                .await
                .is_err()
        );
        let sent = Arc::new(Notify::new());
        let body = OnEnd::new(Full::new(Bytes::from_static(b"x")), told(&sent));
        body.collect().await.unwrap();
        sent.notified().await;
        let sent = Arc::new(Notify::new());
        OnEnd::new(http_body_util::Empty::<Bytes>::new(), told(&sent));
        sent.notified().await;
    }
}
