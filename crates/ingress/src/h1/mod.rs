//! weft's own HTTP/1.1 server connection. hyper's keeps each connection's read buffer (8 KiB) and its task state
//! while the connection waits for its next request; this one holds no buffer then: it reads through a scratch
//! buffer of its thread (`read_into`) and keeps only the bytes a request still needs (a head split over reads,
//! a pipelined request, a body's bytes that came with its head). The request head is parsed by httparse
//! (`parse`), a body is read as the proxy takes it (`body`), and the response goes out with Content-Length when
//! its size is known, else chunked, a small one in one write (`write`). After a `101 Switching Protocols` the
//! connection's bytes are the upgrade's (`crate::upgrade`).

mod body;
mod parse;
mod write;

pub use body::Body;

use crate::graceful::Watcher;
use crate::proxy::{self, Conn, Proxy};
use crate::upgrade::{self, Io, Upgraded};
use body::Decoder;
use bytes::BytesMut;
use http::header::{self, HeaderMap};
use http::{Method, Request, StatusCode, Version};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most of an unread request body skipped so that its connection can carry the next request.
const SKIP_BYTES: u64 = 64 << 10;

/// The most one read takes (the scratch buffer's size).
const SCRATCH_BYTES: usize = 64 << 10;

/// What the interim response to `Expect: 100-continue` is.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A connection: its stream and the bytes read from it and not yet used. The connection, its request's body
/// (read while the request is served, possibly by another task) and after a 101 the upgraded stream share it.
pub(crate) struct State<S: ?Sized> {
    /// Read and not yet taken: empty, and without an allocation, while the connection is idle.
    buf: BytesMut,
    /// Where the current request's body is.
    decoder: Decoder,
    /// `100 Continue`, or what of it is still to be written once the body is first read.
    expect: &'static [u8],
    io: S,
}

fn lock<S: ?Sized>(state: &Mutex<State<S>>) -> MutexGuard<'_, State<S>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// Reads what `io` has into `buf`, through this thread's scratch buffer, so that `buf` holds only what came: the
/// bytes read (0 at the end of the stream).
pub(crate) fn poll_read_into<S: AsyncRead + Unpin + ?Sized>(
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut read = ReadBuf::new(scratch);
        ready!(Pin::new(io).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
}

/// `poll_read_into` as a future; cancelling it loses nothing.
pub(crate) async fn read_into<S: AsyncRead + Unpin + ?Sized>(io: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    poll_fn(|cx| poll_read_into(io, cx, buf)).await
}

/// What came of waiting for a request head.
enum Next {
    Head(Box<parse::Head>),
    /// The client closed (or the stream failed) between requests.
    Closed,
    /// A head the connection answers with this status and closes after.
    Refused(StatusCode),
}

/// What the connection does after an exchange.
enum After {
    Again,
    Close,
    /// The stream is the upgrade's.
    Switched,
}

/// Serves HTTP/1.1 (and 1.0) requests on `io`, whose first bytes (already read) are `first`, until the client
/// closes, a response closes the connection, or the listener stops (between two requests).
pub(crate) async fn serve<S: Io + 'static>(
    io: S,
    first: BytesMut,
    proxy: Arc<Proxy>,
    conn: Arc<Conn>,
    mut watcher: Watcher,
) {
    let state = Arc::new(Mutex::new(State {
        buf: first,
        decoder: Decoder::Done,
        expect: b"",
        io,
    }));
    let timeouts = proxy.client_timeouts();
    loop {
        if lock(&state).buf.is_empty() {
            // Idle: until the next request's first bytes, which the listener's stop or the idle timeout end
            // instead (quietly, as nginx closes an idle keep-alive connection).
            let read = tokio::select! {
                read = tokio::time::timeout(timeouts.idle, read_some(&state)) => read,
                () = watcher.stopping() => break,
            };
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                break;
            }
        }
        let next = match tokio::time::timeout(timeouts.head, next_head(&state)).await {
            Ok(next) => next,
            Err(_) => Next::Refused(StatusCode::REQUEST_TIMEOUT),
        };
        let head = match next {
            Next::Head(head) => head,
            Next::Closed => break,
            Next::Refused(status) => {
                let _ = Box::pin(write::refusal(&state, status)).await;
                break;
            }
        };
        let stopping = watcher.is_stopping();
        match Box::pin(exchange(&state, head, &proxy, &conn, stopping)).await {
            After::Again => {}
            After::Close => break,
            After::Switched => return,
        }
    }
    let _ = poll_fn(|cx| Pin::new(&mut lock(&state).io).poll_shutdown(cx)).await;
}

/// Reads what the connection has into its buffer: the bytes read, 0 at its end.
async fn read_some<S: Io + ?Sized>(state: &Mutex<State<S>>) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut state = lock(state);
        let state = &mut *state;
        poll_read_into(&mut state.io, cx, &mut state.buf)
    })
    .await
}

/// The next request head; the bytes after it stay in the buffer.
async fn next_head<S: Io + ?Sized>(state: &Mutex<State<S>>) -> Next {
    poll_fn(|cx| {
        let mut state = lock(state);
        let state = &mut *state;
        loop {
            if !state.buf.is_empty() {
                match parse::head(&mut state.buf) {
                    parse::Parsed::Head(head) => {
                        release(&mut state.buf);
                        return Poll::Ready(Next::Head(head));
                    }
                    parse::Parsed::Refused(status) => return Poll::Ready(Next::Refused(status)),
                    parse::Parsed::Partial => {}
                }
            }
            match ready!(poll_read_into(&mut state.io, cx, &mut state.buf)) {
                Ok(0) | Err(_) => return Poll::Ready(Next::Closed),
                Ok(_) => {}
            }
        }
    })
    .await
}

/// Gives `buf`'s allocation up once all of it has been taken.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}

/// One request and its response.
async fn exchange<S: Io + 'static>(
    state: &Arc<Mutex<State<S>>>,
    head: Box<parse::Head>,
    proxy: &Proxy,
    conn: &Conn,
    stopping: bool,
) -> After {
    let parse::Head { mut parts, framing } = *head;
    let version = parts.version;
    let mode = write::Mode {
        head_request: parts.method == Method::HEAD,
        version,
        keep_alive: !stopping && keeps_alive(version, &parts.headers),
    };
    let switch = (version == Version::HTTP_11 && proxy::upgrade_protocol(&parts.headers).is_some()).then(|| {
        let (own, sender) = upgrade::Own::new();
        parts.extensions.insert(own);
        sender
    });
    let expects = version == Version::HTTP_11
        && framing.has_body()
        && parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    {
        let mut state = lock(state);
        state.decoder = Decoder::new(framing);
        state.expect = if expects { CONTINUE } else { b"" };
    }
    let shared: Arc<Mutex<State<dyn Io>>> = state.clone();
    let request = Request::from_parts(parts, crate::body::Incoming::H1(Body::new(shared, framing)));
    let response = proxy.handle(request, conn).await;
    // A body the proxy left unread (a 404 to a POST) is read past when it has already come, so that the connection
    // can carry the next request; one still being sent upstream is the upstream's to read.
    if Arc::strong_count(state) == 1 {
        lock(state).skip_body();
    }
    let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let switch = switch.filter(|_| switched);
    let written = write::response(state, response, mode).await;
    match (written, switch) {
        (Ok(_), Some(switch)) => {
            let _ = switch.send(Upgraded::new(Tunnel(state.clone())));
            After::Switched
        }
        (Ok(true), None) if lock(state).decoder.is_done() => After::Again,
        _ => After::Close,
    }
}

/// Whether the client lets the connection stay open after this request: HTTP/1.1 unless it says `close`, HTTP/1.0
/// when it says `keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    if proxy::has_token(headers, header::CONNECTION, "close") {
        return false;
    }
    version == Version::HTTP_11 || proxy::has_token(headers, header::CONNECTION, "keep-alive")
}

/// The connection after a protocol switch: the bytes that came after the request head first.
struct Tunnel<S: ?Sized>(Arc<Mutex<State<S>>>);

impl<S: Io + ?Sized> AsyncRead for Tunnel<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = lock(&self.0);
        let state = &mut *state;
        crate::proxy_protocol::poll_read_after(&mut state.buf, &mut state.io, cx, buf)
    }
}

impl<S: Io + ?Sized> AsyncWrite for Tunnel<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.0).io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.0).io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        lock(&self.0).io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_shutdown(cx)
    }
}
