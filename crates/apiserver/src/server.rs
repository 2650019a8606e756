//! The HTTPS server: TLS with optional client certificates (a request without any gets a 401 Status, not a
//! handshake failure), HTTP/1.1 and HTTP/2 on one port, connection upgrades for the streaming subresources. It
//! runs its own tokio runtime on its own threads, so its callers (the lab's supervisor) stay synchronous.

use crate::api::{Api, Call, MAX_BODY, answer, error};
use crate::auth::UserInfo;
use crate::body::Body;
use crate::status::ApiError;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A running server: dropping it does not stop it; it lives as long as the process.
pub struct Running {
    /// The addresses it listens on (the ports chosen when asked for port 0).
    pub addresses: Vec<SocketAddr>,
}

/// Serves the API on already bound listeners (a listener bound inside another network namespace stays there),
/// on a runtime of `threads` workers started here.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
    threads: usize,
) -> std::io::Result<Running> {
    let addresses = listeners
        .iter()
        .map(std::net::TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    for l in &listeners {
        l.set_nonblocking(true)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("weft-api")
        .enable_all()
        .build()?;
    std::thread::Builder::new().name("weft-api".into()).spawn(move || {
        runtime.block_on(async move {
            let acceptor = TlsAcceptor::from(tls);
            let mut tasks = Vec::new();
            for l in listeners {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => tasks.push(tokio::spawn(accept(l, acceptor.clone(), api.clone()))),
                    Err(e) => eprintln!("weft api: {e}"),
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    })?;
    Ok(Running { addresses })
}

async fn accept(listener: tokio::net::TcpListener, acceptor: TlsAcceptor, api: Arc<Api>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            let user = stream.get_ref().1.peer_certificates().and_then(crate::pki::identity);
            let service = service_fn(move |req| {
                let (api, user) = (api.clone(), user.clone());
                async move { Ok::<_, Infallible>(handle(&api, req, user).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(api: &Api, mut req: Request<Incoming>, user: Option<UserInfo>) -> hyper::Response<Body> {
    // Kept before the request is taken apart: the streaming subresources switch this connection's protocol.
    let upgrade = req
        .headers()
        .contains_key(hyper::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(&ApiError::too_large()),
    };
    let mut call = Call::new(&parts, body, user);
    call.upgrade = upgrade;
    answer(api, call).await
}
