//! Responses on an HTTP/1.1 connection: the head, then the body with Content-Length when its size is exact, else
//! chunked (trailers are dropped), or until the connection closes for an HTTP/1.0 client. A body that is there at
//! once (most of the proxy's) goes in the same write as the head: one system call for a small response.

use super::{State, lock};
use crate::body::Body;
use crate::upgrade::Io;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use hyper::body::Body as _;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the response's request asked of it.
pub(super) struct Mode {
    /// A HEAD request: the response has no body.
    pub(super) head_request: bool,
    pub(super) version: Version,
    /// The connection may stay open after the response (the client's and the server's side of it).
    pub(super) keep_alive: bool,
}

/// How the body goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    /// Content-Length, or until the connection closes.
    AsIs,
    Chunked,
}

/// Writes `response`; whether the connection may carry another request after it.
pub(super) async fn response<S: Io + ?Sized>(
    state: &Mutex<State<S>>,
    response: Response<Body>,
    mode: Mode,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let mut headers = parts.headers;
    let mut keep_alive = mode.keep_alive && !closes(&headers);
    // No interim 100 once the final response is on its way.
    {
        let mut state = lock(state);
        state.expect = b"";
        keep_alive &= state.decoder.is_done();
    }
    headers.remove(header::TRANSFER_ENCODING);
    let framing = if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(header::CONTENT_LENGTH);
        Framing::None
    } else if mode.head_request || status == StatusCode::NOT_MODIFIED {
        // The Content-Length is the one a GET would have had: the upstream's, or the size of a body of the proxy's.
        let length = body.size_hint().exact().filter(|&n| n > 0);
        if let Some(n) = length.filter(|_| !headers.contains_key(header::CONTENT_LENGTH)) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        Framing::None
    } else if let Some(n) = body.size_hint().exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        Framing::AsIs
    } else if mode.version == Version::HTTP_11 {
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        Framing::Chunked
    } else {
        headers.remove(header::CONTENT_LENGTH);
        keep_alive = false;
        Framing::AsIs
    };
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else if mode.version == Version::HTTP_10 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date());
    }
    let mut head = encode_head(status, &headers);
    if framing == Framing::None || body.is_end_stream() {
        let end: &[u8] = if framing == Framing::Chunked { b"0\r\n\r\n" } else { b"" };
        write_all(state, &mut [IoSlice::new(&head), IoSlice::new(end)]).await?;
        flush(state).await?;
        return Ok(keep_alive);
    }
    loop {
        // The first frame goes with the head if it is there at once; else the head goes alone first.
        let frame = if head.is_empty() {
            poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        } else {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    write_all(state, &mut [IoSlice::new(&head)]).await?;
                    flush(state).await?;
                    head.clear();
                    continue;
                }
            }
        };
        let (data, last) = match frame {
            None => (Bytes::new(), true),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() && !body.is_end_stream() => continue,
                Ok(data) => (data, body.is_end_stream()),
                // Trailers: HTTP/1.1 clients seldom ask for them; dropped.
                Err(_) => continue,
            },
            Some(Err(e)) => return Err(io::Error::other(e)),
        };
        let mut size = [0u8; 18];
        let (size, end): (&[u8], &[u8]) = match framing {
            Framing::Chunked if data.is_empty() => (b"", b"0\r\n\r\n"),
            Framing::Chunked => (
                chunk_size(data.len(), &mut size),
                if last { b"\r\n0\r\n\r\n" } else { b"\r\n" },
            ),
            _ => (b"", b""),
        };
        let mut slices = [
            IoSlice::new(&head),
            IoSlice::new(size),
            IoSlice::new(&data),
            IoSlice::new(end),
        ];
        write_all(state, &mut slices).await?;
        head.clear();
        if last {
            break;
        }
    }
    flush(state).await?;
    Ok(keep_alive)
}

/// Answers a request head the connection refuses (400, 431); the connection closes after.
pub(super) async fn refusal<S: Io + ?Sized>(state: &Mutex<State<S>>, status: StatusCode) -> io::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::DATE, date());
    write_all(state, &mut [IoSlice::new(&encode_head(status, &headers))]).await?;
    flush(state).await
}

/// Whether the response says the connection closes after it.
fn closes(headers: &HeaderMap) -> bool {
    crate::proxy::has_token(headers, header::CONNECTION, "close")
}

fn encode_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let size: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut head = Vec::with_capacity(size + 48);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A chunk-size line for `n` bytes, in `into`.
fn chunk_size(n: usize, into: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in into[..digits].iter_mut().enumerate() {
        *slot = HEX[(n >> (4 * (digits - 1 - i))) & 0xf];
    }
    into[digits..digits + 2].copy_from_slice(b"\r\n");
    &into[..digits + 2]
}

/// The Date header, made once a second per thread.
fn date() -> HeaderValue {
    thread_local! {
        static DATE: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|date| match date {
        Some((at, value)) if *at == second => value.clone(),
        _ => {
            let value = HeaderValue::try_from(httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
            *date = Some((second, value.clone()));
            value
        }
    })
}

async fn write_all<S: Io + ?Sized>(state: &Mutex<State<S>>, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let written = poll_fn(|cx| Pin::new(&mut lock(state).io).poll_write_vectored(cx, slices)).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

async fn flush<S: Io + ?Sized>(state: &Mutex<State<S>>) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut lock(state).io).poll_flush(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BoxError;
    use crate::h1::body::Decoder;
    use bytes::BytesMut;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Frame;
    use std::task::Context;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// A stream that keeps each write (a vectored one as one).
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncRead for Writes {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let write: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = write.len();
            self.0.push(write);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The writes `response` makes, as text, and whether the connection stays open after it.
    async fn written(response: Response<Body>, version: Version, head_request: bool) -> (Vec<String>, bool) {
        let state = Mutex::new(State {
            buf: BytesMut::new(),
            decoder: Decoder::Done,
            expect: b"",
            io: Writes::default(),
        });
        let mode = Mode {
            head_request,
            version,
            keep_alive: true,
        };
        let open = super::response(&state, response, mode).await.unwrap();
        let writes = lock(&state)
            .io
            .0
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        (writes, open)
    }

    fn full(text: &'static str) -> Response<Body> {
        Response::new(
            Full::new(Bytes::from_static(text.as_bytes()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
    }

    #[tokio::test]
    async fn a_small_response_is_one_write_with_its_length() {
        let (writes, open) = written(full("hello"), Version::HTTP_11, false).await;
        assert_eq!(writes.len(), 1, "{writes:?}");
        assert!(writes[0].starts_with("HTTP/1.1 200 OK\r\n"), "{writes:?}");
        assert!(writes[0].contains("content-length: 5\r\n"), "{writes:?}");
        assert!(writes[0].contains("date: "), "{writes:?}");
        assert!(writes[0].ends_with("\r\n\r\nhello"), "{writes:?}");
        assert!(open);
        // HEAD: the length a GET would have, no body.
        let (writes, _) = written(full("hello"), Version::HTTP_11, true).await;
        assert!(writes[0].contains("content-length: 5\r\n") && writes[0].ends_with("\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_body_of_unknown_size_goes_chunked_or_until_close_for_http_1_0() {
        let unsized_body = || {
            let chunks = ["hello", " world"].map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes()))));
            Response::new(http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync())
        };
        let (writes, open) = written(unsized_body(), Version::HTTP_11, false).await;
        let all = writes.concat();
        assert!(all.contains("transfer-encoding: chunked\r\n"), "{all}");
        assert!(all.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "{all}");
        assert!(open);
        let (writes, open) = written(unsized_body(), Version::HTTP_10, false).await;
        let all = writes.concat();
        assert!(
            all.contains("connection: close\r\n") && all.ends_with("\r\n\r\nhello world"),
            "{all}"
        );
        assert!(!open);
    }

    #[test]
    fn chunk_sizes_are_hex_lines() {
        let mut buf = [0; 18];
        assert_eq!(chunk_size(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size(255, &mut buf), b"ff\r\n");
        assert_eq!(chunk_size(4096, &mut buf), b"1000\r\n");
    }

    #[test]
    fn a_head_has_the_status_line_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(3));
        let head = encode_head(StatusCode::NOT_FOUND, &headers);
        assert_eq!(head, b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\n");
    }
}
