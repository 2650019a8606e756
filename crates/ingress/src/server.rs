//! The listeners: plain HTTP and TLS, each connection served by hyper's automatic HTTP/1.1 or HTTP/2 (ALPN `h2`
//! after TLS; the client's preface on plain connections, i.e. h2c with prior knowledge). On `stop` a listener
//! closes and lets its connections finish: requests in flight complete, idle keep-alive connections close, HTTP/2
//! clients get a GOAWAY. With the PROXY protocol on (`Proxy::with_proxy_protocol`), each connection's header
//! comes first and names the client (see `proxy_protocol`).

use crate::proxy::{Conn, Proxy};
use crate::proxy_protocol;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The most a request's headers may take (HTTP/1.1: the request line and headers; HTTP/2: the decoded header
/// list); more is answered 431. ingress-nginx allows 4 × 8 KiB and large cookies or JWTs outgrow that; 64 KiB
/// holds them and still bounds what one request can make the proxy buffer.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// How long a client has to finish its TLS handshake (and a load balancer its PROXY protocol header).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Makes a socket of `bind_shared` a listener of the runtime this is called in.
pub fn listen(socket: TcpSocket) -> std::io::Result<TcpListener> {
    socket.listen(BACKLOG)
}

/// Accepts connections on `listener` until `stop` turns true, then waits for its connections to finish; with
/// `tls`, each is a TLS connection first.
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
    let graceful = GracefulShutdown::new();
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
async fn start<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    proxy: Arc<Proxy>,
    tls: Option<TlsAcceptor>,
    conn: Conn,
    watcher: Watcher,
) {
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

pub(crate) async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    proxy: Arc<Proxy>,
    conn: Conn,
    watcher: Watcher,
) {
    let conn = Arc::new(conn);
    let client = conn.client;
    // The request's future in a box of its own: hyper keeps a connection's future in the connection's state, and
    // the proxy's is about 7 KiB, which every idle keep-alive connection would otherwise hold (and touch).
    let service = service_fn(move |request| {
        let (proxy, conn) = (proxy.clone(), conn.clone());
        Box::pin(async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, &conn).await) })
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // WebSockets over HTTP/2 (RFC 8441; see `connect`).
        .enable_connect_protocol();
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}
