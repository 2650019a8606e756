//! Bodies on their way through the proxy: the boxed body type both directions use, a body that fails when the
//! next chunk takes longer than a timeout (nginx's proxy read and send timeouts are between two successive
//! reads or writes, not for the whole body), and one that tells when it has all been taken (the wait for the
//! response starts then, not while a long upload is still on its way).

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

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

/// `inner`, telling `sent` once its end has been taken (at once for a body that is empty).
pub struct Watched<B> {
    inner: B,
    sent: Arc<Notify>,
}

impl<B: HttpBody> Watched<B> {
    pub fn new(inner: B, sent: Arc<Notify>) -> Watched<B> {
        if inner.is_end_stream() {
            sent.notify_one();
        }
        Watched { inner, sent }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.sent.notify_one();
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
    async fn a_watched_body_tells_when_its_end_is_taken() {
        let sent = Arc::new(Notify::new());
        let mut body = Watched::new(OneThenSilence(false), sent.clone());
        assert!(body.frame().await.unwrap().is_ok());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sent.notified())
                .await
                .is_err()
        );
        let sent = Arc::new(Notify::new());
        let body = Watched::new(Full::new(Bytes::from_static(b"x")), sent.clone());
        body.collect().await.unwrap();
        sent.notified().await;
        let sent = Arc::new(Notify::new());
        Watched::new(http_body_util::Empty::<Bytes>::new(), sent.clone());
        sent.notified().await;
    }
}
