//! `/healthz`, `/readyz` and `/metrics` over a minimal HTTP/1.1 responder (one request per connection, GET and
//! HEAD): what kubelet's probes and a Prometheus scrape need, without an HTTP stack in the node components.

use crate::metrics::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What the probes ask a component.
pub trait Probes: Send + Sync {
    /// Alive and not stuck (kubelet's liveness probe restarts the container otherwise); `Err` says why not.
    fn healthy(&self) -> Result<(), String>;
    /// Ready to do its job (readiness gates a rollout); `Err` says what it waits for.
    fn ready(&self) -> Result<(), String>;
}

pub const TEXT: &str = "text/plain; charset=utf-8";
/// The content type of the Prometheus text format.
pub const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Endpoints a component serves beside the probes and metrics (the agent's `/flows`).
pub trait Extra: Send + Sync {
    /// Takes a GET of `path` (query included) by writing the whole response to `stream`, which it may stream
    /// until the client goes; `None` when the path is not one of its own.
    fn serve(&self, path: &str, stream: &mut TcpStream) -> Option<io::Result<()>>;
}

/// Binds `addr` and serves the endpoints on a thread of its own; answers the address bound (port 0: any).
pub fn start(addr: SocketAddr, probes: Arc<dyn Probes>, metrics: Registry) -> io::Result<SocketAddr> {
    start_with(addr, probes, metrics, None)
}

/// [`start`], with `extra`'s endpoints too.
pub fn start_with(
    addr: SocketAddr,
    probes: Arc<dyn Probes>,
    metrics: Registry,
    extra: Option<Arc<dyn Extra>>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("http-endpoints".into())
        .spawn(move || serve(listener, &probes, &metrics, extra.as_ref()))?;
    Ok(bound)
}

/// Serves forever, a short-lived thread per connection (a slow client holds only its own).
fn serve(listener: TcpListener, probes: &Arc<dyn Probes>, metrics: &Registry, extra: Option<&Arc<dyn Extra>>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else {
            // Out of file descriptors and the like: do not spin.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let (probes, metrics, extra) = (probes.clone(), metrics.clone(), extra.cloned());
        let _ = std::thread::Builder::new()
            .name("http-endpoint".into())
            .stack_size(256 << 10)
            .spawn(move || {
                let _ = respond_with(stream, extra.as_deref(), |path| route(path, probes.as_ref(), &metrics));
            });
    }
}

/// An answer: status line text, content type, body.
pub type Answer = (&'static str, &'static str, String);

/// The answer for a request path.
pub fn route(path: &str, probes: &dyn Probes, metrics: &Registry) -> Answer {
    let verdict = |r: Result<(), String>, ok: &str| match r {
        Ok(()) => ("200 OK", TEXT, format!("{ok}\n")),
        Err(why) => ("503 Service Unavailable", TEXT, format!("{why}\n")),
    };
    match path.split('?').next().unwrap_or("") {
        "/healthz" | "/health" | "/livez" => verdict(probes.healthy(), "ok"),
        "/readyz" | "/ready" => verdict(probes.ready(), "ready"),
        "/metrics" => ("200 OK", METRICS, metrics.render()),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

/// Reads one request from `stream` and writes `answer(path)` back, then closes.
pub fn respond(stream: TcpStream, answer: impl FnOnce(&str) -> Answer) -> io::Result<()> {
    respond_with(stream, None, answer)
}

/// [`respond`], giving `extra` the first look at a GET.
fn respond_with(
    mut stream: TcpStream,
    extra: Option<&dyn Extra>,
    answer: impl FnOnce(&str) -> Answer,
) -> io::Result<()> {
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
    if method == "GET"
        && let Some(done) = extra.and_then(|extra| extra.serve(path, &mut stream))
    {
        return done;
    }
    let (status, kind, body) = if method == "GET" || method == "HEAD" {
        answer(path)
    } else {
        ("405 Method Not Allowed", TEXT, "GET only\n".to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Collect, Exposition};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Component {
        ready: AtomicBool,
    }

    impl Probes for Component {
        fn healthy(&self) -> Result<(), String> {
            Ok(())
        }
        fn ready(&self) -> Result<(), String> {
            match self.ready.load(Ordering::Relaxed) {
                true => Ok(()),
                false => Err("waiting for the first sync".into()),
            }
        }
    }

    impl Collect for Component {
        fn collect(&self, out: &mut Exposition) {
            out.gauge(
                "test_ready",
                "Whether ready.",
                u8::from(self.ready.load(Ordering::Relaxed)),
            );
        }
    }

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn probes_and_metrics_over_http() {
        let component = Arc::new(Component::default());
        let registry = Registry::default();
        registry.register(component.clone());
        let addr = start("127.0.0.1:0".parse().unwrap(), component.clone(), registry).unwrap();
        let ready = |s: &str| get(addr, &format!("GET {s} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(ready("/healthz").starts_with("HTTP/1.1 200 OK"));
        let not_yet = ready("/readyz");
        assert!(not_yet.starts_with("HTTP/1.1 503"), "{not_yet}");
        assert!(not_yet.ends_with("waiting for the first sync\n"), "{not_yet}");
        component.ready.store(true, Ordering::Relaxed);
        assert!(ready("/readyz").starts_with("HTTP/1.1 200 OK"));
        let metrics = ready("/metrics");
        assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"), "{metrics}");
        assert!(metrics.ends_with("test_ready 1\n"), "{metrics}");
        assert!(ready("/nothing").starts_with("HTTP/1.1 404"));
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    }
}
