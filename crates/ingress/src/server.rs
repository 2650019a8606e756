//! The listeners: plain HTTP and TLS, each connection served as HTTP/2 by hyper when it starts with HTTP/2's
//! preface (after ALPN `h2` on TLS; h2c with prior knowledge on plain connections), else as HTTP/1.1 by weft's own
//! server (`h1`), which holds no buffer while a connection is idle. On `stop` a listener closes and lets its
//! connections finish: requests in flight complete, idle keep-alive connections close, HTTP/2 clients get a
//! GOAWAY. With the PROXY protocol on (`Proxy::with_proxy_protocol`), each connection's header
//! comes first and names the client (see `proxy_protocol`).

use crate::body::Incoming;
use crate::graceful::{Graceful, Watcher};
use crate::h1;
use crate::proxy::{Conn, Proxy};
use crate::proxy_protocol::{self, Prefixed};
use crate::upgrade::Io;
use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The most a request's headers may take (HTTP/1.1: the request line and headers; HTTP/2: the decoded header
/// list); more is answered 431. ingress-nginx allows 4 × 8 KiB and large cookies or JWTs outgrow that; 64 KiB
/// holds them and still bounds what one request can make the proxy buffer.
pub(crate) const MAX_HEADER_BYTES: usize = 64 << 10;

/// What an HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a client has to finish its TLS handshake (and a load balancer its PROXY protocol header).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a worker runtime's time driver wakes, whatever its timers say (`keep_timer_near`).
const TIMER_TICK: Duration = Duration::from_secs(1);

/// Pending connections a listener queues (mio's, and so tokio's `TcpListener::bind`'s).
const BACKLOG: u32 = 1024;

/// `n` sockets bound to `addr` with SO_REUSEPORT, not yet listening: one per worker thread, each to become that
/// thread's listener (`listen`), so the kernel spreads new connections over the workers as nginx's `reuseport`
/// does, and a connection lives on one thread from accept to close. Port 0 is chosen once, by the first.
pub fn bind_shared(addr: SocketAddr, n: usize) -> std::io::Result<Vec<TcpSocket>> {
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Wakes this runtime's time driver every `TIMER_TICK`, forever: to be spawned on each worker runtime. Every
/// proxied request sets a timer (its upstream's read timeout, 60 s by default), and tokio wakes its driver (a write
/// to the runtime's eventfd, and one more `epoll_wait`) whenever a new timer is due before the driver's planned
/// wake-up; on a current-thread runtime the timer's own thread is the one running, so the wake is wasted. When a
/// worker's nearest timer was an idle connection's (75 s) that was most requests' read timer: 0.15–0.26 eventfd
/// writes per request (`scripts/ingress-syscalls.sh`), which nginx never makes. With the driver's wake-up never
/// more than a second away, no request's timer is due before it.
pub async fn keep_timer_near() {
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Makes a socket of `bind_shared` a listener of the runtime this is called in.
pub fn listen(socket: TcpSocket) -> std::io::Result<TcpListener> {
    socket.listen(BACKLOG)
}

/// The next connection of `listener`; none once `stop` turns true. Failures (out of file descriptors and the
/// like) are logged and waited out briefly rather than spun on.
pub async fn accept(listener: &TcpListener, stop: &mut watch::Receiver<bool>) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return None,
        };
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = Graceful::new();
    while let Some((stream, client)) = accept(&listener, &mut stop).await {
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else { continue };
        let conn = Conn {
            client,
            local,
            tls: tls.is_some(),
            sni: None,
        };
        let (proxy, tls, watcher) = (proxy.clone(), tls.clone(), graceful.watcher());
        // Plain connections as a task of their own type: the TLS handshake's state (and the PROXY protocol's)
        // would otherwise size every connection's task.
        if tls.is_none() && !proxy.proxy_protocol() {
            tokio::spawn(connection(stream, proxy, conn, watcher));
            continue;
        }
        tokio::spawn(async move {
            if !proxy.proxy_protocol() {
                return start(stream, proxy, tls, conn, watcher).await;
            }
            // Behind a load balancer speaking the PROXY protocol: its header says whom the connection is from.
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, proxy_protocol::accept(stream)).await {
                Ok(Ok((named, stream))) => {
                    let conn = match named {
                        Some(named) => Conn {
                            client: named.client,
                            local: named.local,
                            ..conn
                        },
                        None => conn,
                    };
                    start(stream, proxy, tls, conn, watcher).await
                }
                Ok(Err(e)) => tracing::debug!(%client, error = %e, "PROXY protocol"),
                Err(_) => tracing::debug!(%client, "PROXY protocol header timed out"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves a connection: its TLS handshake first, with `tls`.
async fn start<S: Io + 'static>(stream: S, proxy: Arc<Proxy>, tls: Option<TlsAcceptor>, conn: Conn, watcher: Watcher) {
    let client = conn.client;
    match tls {
        None => connection(stream, proxy, conn, watcher).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let sni = stream.get_ref().1.server_name().map(Arc::from);
                connection(stream, proxy, Conn { sni, ..conn }, watcher).await
            }
            Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
        },
    }
}

/// Serves a connection: as HTTP/2 when it starts with the preface, else as HTTP/1.1.
pub(crate) async fn connection<S: Io + 'static>(mut stream: S, proxy: Arc<Proxy>, conn: Conn, mut watcher: Watcher) {
    let conn = Arc::new(conn);
    let mut first = BytesMut::new();
    let timeouts = proxy.client_timeouts();
    while first.len() < PREFACE.len() && PREFACE.starts_with(&first) {
        // A new connection may wait for its first bytes as long as an idle one; a begun head, as long as a head.
        let limit = if first.is_empty() { timeouts.idle } else { timeouts.head };
        let read = tokio::select! {
            read = tokio::time::timeout(limit, h1::read_into(&mut stream, &mut first)) => read,
            () = watcher.stopping() => return,
        };
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
    }
    if first.starts_with(PREFACE) {
        Box::pin(http2(Prefixed::new(first, stream), proxy, conn, watcher)).await
    } else {
        h1::serve(stream, first, proxy, conn, watcher).await
    }
}

/// Serves an HTTP/2 connection with hyper; on `stop`, a GOAWAY and its streams finish.
async fn http2<S: Io + 'static>(stream: S, proxy: Arc<Proxy>, conn: Arc<Conn>, mut watcher: Watcher) {
    let client = conn.client;
    // The request's future in a box of its own: hyper keeps a stream's future in the connection's state, and the
    // proxy's is several KiB.
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let (proxy, conn) = (proxy.clone(), conn.clone());
        Box::pin(
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(request.map(Incoming::Hyper), &conn).await) },
        )
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // WebSockets over HTTP/2 (RFC 8441; see `connect`).
        .enable_connect_protocol();
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = watcher.stopping() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn an_idle_connection_is_a_small_future() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let table = Arc::new(arc_swap::ArcSwap::from_pointee(crate::Table::default()));
        let proxy = Arc::new(Proxy::new(table, Arc::default()));
        let conn = Conn {
            client: stream.local_addr().unwrap(),
            local: stream.peer_addr().unwrap(),
            tls: false,
            sni: None,
        };
        let graceful = Graceful::new();
        let future = connection(stream, proxy, conn, graceful.watcher());
        // All an idle connection holds beside its stream and its state's (bufferless) allocation: under 1 KiB
        // even unoptimized, where hyper's connection kept an 8 KiB read buffer besides.
        assert!(size_of_val(&future) <= 1024, "{} bytes", size_of_val(&future));
    }
}
