//! HTTP/2 in cleartext with prior knowledge (h2c), as gRPC clients and proxies with an h2c backend speak it: a
//! plain connection opening with the client preface is served by hyper, each request answered as HTTP/1.x ones
//! are (the echo server's JSON for gRPC calls too, without gRPC framing).

use std::net::{SocketAddr, TcpStream};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Head, Identity, Version, log_err, log_request, respond};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opened `stream` with the HTTP/2 preface (looked at without consuming it).
pub fn opens_with_preface(stream: &TcpStream) -> bool {
    let mut buf = [0u8; PREFACE.len()];
    let mut seen = 0;
    // The preface may come in pieces; peek until it is complete or a byte differs.
    while let Ok(n) = stream.peek(&mut buf) {
        if n == 0 || buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        if n == seen {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seen = n;
    }
    false
}

/// The head `respond` takes for an HTTP/2 request (`:authority` as Host).
fn head(request: &hyper::Request<Incoming>) -> Head {
    let mut headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if let Some(authority) = request.uri().authority()
        && !headers.iter().any(|(n, _)| n == "host")
    {
        headers.insert(0, ("host".into(), authority.to_string()));
    }
    Head {
        method: request.method().to_string(),
        target: request
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), ToString::to_string),
        version: Version::Http2,
        headers,
    }
}

/// Serves one h2c connection to its end.
pub fn serve(stream: TcpStream, peer: SocketAddr, id: &Identity) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return log_err(format_args!("{peer}: h2c: {e}")),
    };
    runtime.block_on(async {
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => return log_err(format_args!("{peer}: h2c: {e}")),
        };
        let service = hyper::service::service_fn(|request: hyper::Request<Incoming>| {
            let head = head(&request);
            let answer = respond(&head, peer, id);
            log_request(peer, &head, answer.status);
            let mut response = hyper::Response::builder().status(answer.status);
            for (name, value) in &answer.headers {
                response = response.header(name, value);
            }
            let response = response
                .body(Full::new(Bytes::from(answer.body)))
                .map_err(|e| std::io::Error::other(e.to_string()));
            async move { response }
        });
        let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
        if let Err(e) = served {
            log_err(format_args!("{peer}: h2c: {e}"));
        }
    });
}
