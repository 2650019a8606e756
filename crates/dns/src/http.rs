//! `/health`, `/ready` and `/metrics` over a minimal HTTP/1.1 responder (one request per connection).

use crate::server::Shared;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Serves the endpoints on `listener` forever, a short-lived thread per connection.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("dns-http".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let _ = respond(stream, &shared);
            });
    }
}

/// The status, content type and body for a request line's path.
pub fn route(path: &str, shared: &Shared) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path.split('?').next().unwrap_or("") {
        "/health" | "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/ready" | "/readyz" if shared.ready() => ("200 OK", TEXT, "ready\n".into()),
        "/ready" | "/readyz" => (
            "503 Service Unavailable",
            TEXT,
            "waiting for the first snapshot\n".into(),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

fn respond(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read until the end of the headers (or 8 KiB: then answer whatever the request line said).
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, kind, body) = if method == "GET" || method == "HEAD" {
        route(path, shared)
    } else {
        ("405 Method Not Allowed", "text/plain", "GET only\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
