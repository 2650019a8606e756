//! The keep-alive pool of plain HTTP/1.1 upstreams (`backend-protocol: HTTP`, the common case): one per thread,
//! so that on a worker thread's runtime (see `server::bind_shared`) a request, its upstream connection and that
//! connection's task stay on the thread. A connection is hyper's `client::conn::http1` sender; it is taken from
//! its endpoint's idle list for a request and goes back when the response's body ends (`returning`), with no task
//! or boxed future per request. The most recently used connection is taken first (its socket and buffers are the
//! warmest). Idle ones beyond `IDLE_PER_ENDPOINT` are closed, and those idle longer than `IDLE_TIMEOUT` when the
//! thread next uses its pool (sweeping it at most every `SWEEP_EVERY`): a thread without requests keeps its idle
//! connections until the endpoints close them, as their servers' own idle timeouts do. HTTPS, h2c and gRPC
//! upstreams, and the routes with a `proxy-ssl-*` client, go through `backend`'s clients instead.

use crate::body::{Body, OnEnd};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per endpoint and thread, and for how long (ingress-nginx's upstream keepalive defaults).
const IDLE_PER_ENDPOINT: usize = 320;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a thread's whole pool is swept of expired connections (on its next use).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: nothing was sent, any request may go to another endpoint.
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, #[source] std::io::Error),
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    /// The request (or part of it) may have reached the endpoint.
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

impl SendError {
    /// Whether the request surely did not reach the endpoint.
    pub fn unsent(&self) -> bool {
        matches!(self, SendError::Connect(..) | SendError::ConnectTimeout(_))
    }
}

/// A connection lent to one request, to be given back to the pool of the thread its response ends on.
#[derive(Debug)]
pub struct Lease {
    endpoint: SocketAddr,
    sender: SendRequest<Body>,
}

impl Lease {
    fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        IDLE.with_borrow_mut(|idle| idle.put(self.endpoint, self.sender));
    }
}

struct Entry {
    sender: SendRequest<Body>,
    since: Instant,
}

/// A thread's idle connections by endpoint.
#[derive(Default)]
struct Idle {
    endpoints: HashMap<SocketAddr, Vec<Entry>, foldhash::fast::RandomState>,
    swept: Option<Instant>,
}

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::default();
}

impl Idle {
    fn put(&mut self, endpoint: SocketAddr, sender: SendRequest<Body>) {
        let now = Instant::now();
        if self.swept.is_none_or(|swept| now - swept >= SWEEP_EVERY) {
            self.sweep(now);
        }
        let list = self.endpoints.entry(endpoint).or_default();
        if list.len() < IDLE_PER_ENDPOINT {
            list.push(Entry { sender, since: now });
        }
    }

    /// The most recently used connection to `endpoint` that is still open and not expired.
    fn take(&mut self, endpoint: SocketAddr) -> Option<SendRequest<Body>> {
        let list = self.endpoints.get_mut(&endpoint)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Drops the connections idle longer than `IDLE_TIMEOUT` or closed, and the endpoints left with none.
    fn sweep(&mut self, now: Instant) {
        self.swept = Some(now);
        self.endpoints.retain(|_, list| {
            list.retain(|e| !e.sender.is_closed() && now - e.since < IDLE_TIMEOUT);
            !list.is_empty()
        });
    }
}

/// Sends `request` (its URI in origin form: the path and query) to `endpoint` on an idle connection of this
/// thread's pool, or a new one made within `connect`. A pooled connection the endpoint closed in the meantime
/// gives the request back unsent, and the next one (or a new one) takes it.
pub async fn send(
    endpoint: SocketAddr,
    connect: Duration,
    mut request: Request<Body>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    while let Some(mut sender) = IDLE.with_borrow_mut(|idle| idle.take(endpoint)) {
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, Lease { endpoint, sender })),
            Err(mut e) => match e.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(e.into_error().into()),
            },
        }
    }
    let mut sender = open(endpoint, connect).await?;
    let response = sender.send_request(request).await?;
    Ok((response, Lease { endpoint, sender }))
}

/// A new connection to `endpoint`, its task spawned on this runtime.
async fn open(endpoint: SocketAddr, limit: Duration) -> Result<SendRequest<Body>, SendError> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(endpoint)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(SendError::Connect(endpoint, e)),
        Err(_) => return Err(SendError::ConnectTimeout(endpoint)),
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Upgrades (WebSockets) take the connection's socket once the endpoint switches protocols.
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%endpoint, error = %e, "upstream connection failed");
        }
    });
    Ok(sender)
}

/// A response body that gives its connection back to the pool once it has all been read (a body the client
/// leaves unread closes its connection instead). Bodies of `backend`'s clients have no lease.
pub fn returning(inner: Incoming, lease: Option<Lease>) -> OnEnd<Incoming, impl FnOnce() + Unpin> {
    OnEnd::new(inner, move || {
        if let Some(lease) = lease {
            lease.give_back();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use hyper::service::service_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A keep-alive HTTP/1.1 server answering `ok`, counting the connections it accepted.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<Body> {
        Request::builder()
            .uri("/")
            .header("host", "upstream")
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_has_been_read() {
        let (addr, accepted) = server().await;
        for _ in 0..5 {
            let (response, lease) = send(addr, Duration::from_secs(1), get()).await.unwrap();
            let body = returning(response.into_body(), Some(lease));
            assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
        // A response left unread does not go back: the next request gets a connection of its own.
        let (first, lease) = send(addr, Duration::from_secs(1), get()).await.unwrap();
        let unread = returning(first.into_body(), Some(lease));
        let (second, lease) = send(addr, Duration::from_secs(1), get()).await.unwrap();
        let body = returning(second.into_body(), Some(lease));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
        drop(unread);
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, _) = server().await;
        let mut idle = Idle::default();
        for sweep in [false, true] {
            idle.put(addr, open(addr, Duration::from_secs(1)).await.unwrap());
            idle.endpoints.get_mut(&addr).unwrap()[0].since -= IDLE_TIMEOUT;
            if sweep {
                idle.sweep(Instant::now());
                assert!(idle.endpoints.is_empty());
            } else {
                assert!(idle.take(addr).is_none());
            }
        }
        idle.put(addr, open(addr, Duration::from_secs(1)).await.unwrap());
        assert!(idle.take(addr).is_some());
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_unsent_request() {
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let error = send(addr, Duration::from_secs(1), get()).await.unwrap_err();
        assert!(error.unsent(), "{error}");
    }
}
