//! Bodies on their way through the proxy: the boxed body type both directions use, and a body that fails when
//! the next chunk takes longer than a timeout (nginx's proxy read and send timeouts are between two successive
//! reads or writes, not for the whole body).

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The error of a body whose next chunk did not come in time.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct Stalled(pub Duration);

/// `inner`, failing with `Stalled` when a chunk (or the end) takes longer than `timeout` after the previous one.
pub struct Idle<B> {
    inner: B,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> Idle<B> {
    pub fn new(inner: B, timeout: Duration) -> Idle<B> {
        Idle {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
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
                let deadline = Instant::now() + this.timeout;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Stalled(this.timeout).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
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
}
