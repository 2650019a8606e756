//! Request bodies as they come on an HTTP/1.1 connection: Content-Length or chunked (RFC 9112 §7.1; chunk
//! extensions and trailers are read and dropped). A body reads from its connection when it is polled, so a body
//! the proxy never takes is never read (and its connection then closes); `Expect: 100-continue` is answered when
//! it is first polled.

use super::{SKIP_BYTES, State, lock, poll_read_into, release};
use crate::upgrade::Io;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

/// The longest chunk-size line (with its extensions) or trailer line read.
const MAX_LINE: usize = 8 << 10;

/// How a request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

impl Framing {
    pub(super) fn has_body(self) -> bool {
        self != Framing::Empty
    }
}

/// Where a connection is in its current request's body.
pub(super) enum Decoder {
    /// This many bytes to come.
    Length(u64),
    Chunked(Chunked),
    Done,
    Failed,
}

pub(super) enum Chunked {
    /// A chunk-size line.
    Size,
    /// This many bytes of the chunk's data.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
}

impl Decoder {
    pub(super) fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunked::Size),
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the connection closed before the request body's end")]
    Incomplete,
    #[error("malformed chunked request body")]
    Malformed,
    #[error("request body: {0}")]
    Io(#[from] io::Error),
}

/// A request body on weft's HTTP/1.1 server.
pub struct Body {
    /// The connection; none for a request without a body.
    state: Option<Arc<Mutex<State<dyn Io>>>>,
    framing: Framing,
}

impl Body {
    pub(super) fn new(state: Arc<Mutex<State<dyn Io>>>, framing: Framing) -> Body {
        Body {
            state: framing.has_body().then_some(state),
            framing,
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(state) = &self.state else {
            return Poll::Ready(None);
        };
        let polled = ready!(lock(state).poll_body(cx));
        Poll::Ready(polled.transpose().map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.state.as_ref().is_none_or(|state| lock(state).decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Chunked => SizeHint::default(),
        }
    }
}

impl<S: Io + ?Sized> State<S> {
    /// Reads past what has come of an unread body, up to `SKIP_BYTES`, without waiting for more; never asks for
    /// it with `100 Continue`.
    pub(super) fn skip_body(&mut self) {
        self.expect = b"";
        let mut cx = Context::from_waker(Waker::noop());
        let mut skipped = 0;
        while skipped < SKIP_BYTES {
            match self.poll_body(&mut cx) {
                Poll::Ready(Ok(Some(data))) => skipped += data.len() as u64,
                _ => break,
            }
        }
    }

    /// The body's next bytes; none at its end.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BodyError>> {
        while !self.expect.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, self.expect))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.expect = &self.expect[n..];
        }
        loop {
            let decoded = match &mut self.decoder {
                Decoder::Done => return Poll::Ready(Ok(None)),
                Decoder::Failed => return Poll::Ready(Err(BodyError::Malformed)),
                Decoder::Length(left) => {
                    let data = take(&mut self.buf, left);
                    if *left == 0 {
                        self.decoder = Decoder::Done;
                    }
                    data.map(Some)
                }
                Decoder::Chunked(chunked) => match chunk(&mut self.buf, chunked) {
                    Ok(Step::Data(data)) => Some(Some(data)),
                    Ok(Step::End) => {
                        self.decoder = Decoder::Done;
                        Some(None)
                    }
                    Ok(Step::Again) => continue,
                    Ok(Step::More) => None,
                    Err(e) => {
                        self.decoder = Decoder::Failed;
                        return Poll::Ready(Err(e));
                    }
                },
            };
            if let Some(decoded) = decoded {
                release(&mut self.buf);
                return Poll::Ready(Ok(decoded));
            }
            match ready!(poll_read_into(&mut self.io, cx, &mut self.buf)) {
                Ok(0) => {
                    self.decoder = Decoder::Failed;
                    return Poll::Ready(Err(BodyError::Incomplete));
                }
                Ok(_) => {}
                Err(e) => {
                    self.decoder = Decoder::Failed;
                    return Poll::Ready(Err(e.into()));
                }
            }
        }
    }
}

/// Up to `left` bytes of what `buf` has; none when it has nothing.
fn take(buf: &mut BytesMut, left: &mut u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    Some(buf.split_to(n).freeze())
}

/// What a chunked body's next step gave.
enum Step {
    Data(Bytes),
    End,
    /// A step that gave nothing to pass on (a size line, a chunk's CRLF, a trailer).
    Again,
    /// More bytes are needed.
    More,
}

fn chunk(buf: &mut BytesMut, at: &mut Chunked) -> Result<Step, BodyError> {
    match at {
        Chunked::Size => {
            let Some(line) = line(buf)? else { return Ok(Step::More) };
            let size = chunk_size(&line).ok_or(BodyError::Malformed)?;
            *at = if size == 0 {
                Chunked::Trailers
            } else {
                Chunked::Data(size)
            };
            Ok(Step::Again)
        }
        Chunked::Data(left) => match take(buf, left) {
            Some(data) => {
                if *left == 0 {
                    *at = Chunked::DataEnd;
                }
                Ok(Step::Data(data))
            }
            None => Ok(Step::More),
        },
        Chunked::DataEnd if buf.len() < 2 => Ok(Step::More),
        Chunked::DataEnd if buf.starts_with(b"\r\n") => {
            buf.advance(2);
            *at = Chunked::Size;
            Ok(Step::Again)
        }
        Chunked::DataEnd => Err(BodyError::Malformed),
        Chunked::Trailers => match line(buf)? {
            Some(line) if line.is_empty() => Ok(Step::End),
            Some(_) => Ok(Step::Again),
            None => Ok(Step::More),
        },
    }
}

/// The next CRLF-ended line of `buf` without its CRLF, once it has all come.
fn line(buf: &mut BytesMut) -> Result<Option<BytesMut>, BodyError> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE {
            Err(BodyError::Malformed)
        } else {
            Ok(None)
        };
    };
    if end == 0 || buf[end - 1] != b'\r' || end > MAX_LINE {
        return Err(BodyError::Malformed);
    }
    let mut line = buf.split_to(end + 1);
    line.truncate(end - 1);
    Ok(Some(line))
}

/// A chunk-size line's size (hex, before any `;` extensions).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, &b| Some(n << 4 | u64::from(char::from(b).to_digit(16)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked body `wire` decodes to, and what is left after it.
    fn dechunk(wire: &str) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut buf = BytesMut::from(wire);
        let mut at = Chunked::Size;
        let mut body = Vec::new();
        loop {
            match chunk(&mut buf, &mut at)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => return Ok((body, buf.to_vec())),
                Step::Again => {}
                Step::More => return Err(BodyError::Incomplete),
            }
        }
    }

    #[test]
    fn chunks_are_joined_and_extensions_and_trailers_dropped() {
        let (body, rest) = dechunk("5;ext=1\r\nhello\r\n1 \r\n!\r\n0\r\nX-Trailer: t\r\n\r\nNEXT").unwrap();
        assert_eq!(body, b"hello!");
        assert_eq!(rest, b"NEXT");
        assert!(matches!(dechunk("5\r\nhel"), Err(BodyError::Incomplete)));
    }

    #[test]
    fn malformed_chunks_fail() {
        for wire in [
            "x\r\n",
            "5\r\nhelloXX",
            "5\nhello\r\n0\r\n\r\n",
            "11111111111111111\r\n",
        ] {
            assert!(matches!(dechunk(wire), Err(BodyError::Malformed)), "{wire:?}");
        }
    }
}
