//! The load and the measurements every proxy gets alike: `wrk` over keep-alive connections, `openssl s_time`
//! for new TLS handshakes, idle keep-alive connections held open for memory, the resident memory of a process
//! tree, and the backend all the proxies forward to.

use super::cpu::{self, Cpu};
use anyhow::{Context, Result, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Host every request carries (the routes take any host; this is what a client would send).
pub const HOST: &str = "bench.local";

/// What the backend answers every request with: small, as the issue asks.
const BODY: &str = "hello from the backend\n";

/// Serves `BODY` over HTTP/1.1 keep-alive on `port` of 127.0.0.1 until killed (`weft bench ingress --backend`): a
/// single-threaded hyper server, cheap enough that the proxy in front is what is measured.
pub fn backend(port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    let mut response = hyper::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A child process stopped (SIGTERM, then SIGKILL after 5 s) and reaped however the bench ends; SIGTERM lets a
/// master process (nginx, HAProxy) take its workers down with it.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `wrk` run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx responses plus socket errors.
    pub failed: u64,
    /// Requests completed.
    pub requests: u64,
    /// wrk's own CPU.
    pub wrk: Cpu,
}

/// `wrk` against `url` for `seconds` with `threads` and `connections` (keep-alive), latency percentiles included.
pub fn wrk(url: &str, threads: usize, connections: usize, seconds: u64) -> Result<Run> {
    let before = cpu::children();
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args([
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-H",
            &format!("Host: {HOST}"),
            url,
        ])
        .output()
        .context("running wrk (scripts/deps.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let run = parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))?;
    Ok(Run {
        wrk: cpu::children() - before,
        ..run
    })
}

fn parse_wrk(text: &str) -> Option<Run> {
    let field = |prefix: &str| -> Option<&str> {
        let line = text.lines().map(str::trim).find(|l| l.starts_with(prefix))?;
        Some(line[prefix.len()..].trim())
    };
    let count = |text: &str, label: &str| -> u64 {
        text.split(',')
            .filter_map(|part| part.trim().strip_prefix(label)?.trim().parse::<u64>().ok())
            .sum()
    };
    let mut failed = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if let Some(errors) = field("Socket errors:") {
        failed += ["connect", "read", "write", "timeout"]
            .iter()
            .map(|label| count(errors, label))
            .sum::<u64>();
    }
    Some(Run {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_ms: duration_ms(field("50%")?)?,
        p99_ms: duration_ms(field("99%")?)?,
        failed,
        // "N requests in 6.00s, 1.00MB read"
        requests: text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())?,
        wrk: Cpu::default(),
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `1.02s`, in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].parse().ok()?;
    match &text[split..] {
        "us" => Some(value / 1e3),
        "ms" => Some(value),
        "s" => Some(value * 1e3),
        "m" => Some(value * 60e3),
        _ => None,
    }
}

/// New TLS handshakes per second (full handshakes: `s_time -new` never resumes a session), each followed by a
/// `GET /` through the proxy, from `clients` `openssl s_time` processes at once for `seconds`.
pub fn handshakes(target: SocketAddr, clients: usize, seconds: u64) -> Result<f64> {
    let started = std::time::Instant::now();
    let children = (0..clients)
        .map(|_| {
            Command::new("openssl")
                .args(["s_time", "-connect", &target.to_string(), "-new", "-www", "/"])
                .args(["-time", &seconds.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("running openssl s_time")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut connections = 0.0;
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "N connections in T real seconds, B bytes read per connection" (T in whole seconds: the time is ours)
        let line = text
            .lines()
            .find(|l| l.contains("real seconds"))
            .with_context(|| format!("reading s_time's output:\n{text}"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let n: f64 = words.first().and_then(|n| n.parse().ok()).context("s_time's count")?;
        let bytes: f64 = words.get(6).and_then(|b| b.parse().ok()).unwrap_or(0.0);
        if bytes < BODY.len() as f64 {
            bail!("s_time read {bytes} bytes per connection: the proxy did not answer with the backend's body");
        }
        connections += n;
    }
    Ok(connections / started.elapsed().as_secs_f64())
}

/// Opens `n` connections to `target`, sends one request on each and reads its response, and keeps them open
/// (idle keep-alive connections) until the result is dropped.
pub fn idle_connections(target: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !complete(&got) {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    bail!("the proxy closed a keep-alive connection");
                }
                got.extend_from_slice(&buf[..n]);
            }
            if !got.starts_with(b"HTTP/1.1 200") {
                bail!("unexpected answer: {}", String::from_utf8_lossy(&got));
            }
            Ok(stream)
        })
        .collect()
}

/// Whether `got` holds a whole response with a Content-Length body.
fn complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + length
}

/// The resident memory of process `pid` and all its descendants, in KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    tree(pid).into_iter().map(|p| rss_kib(p).unwrap_or(0)).sum()
}

/// Process `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut todo = vec![pid];
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The fields after the command (which may hold spaces) in parentheses: state, then the parent.
            let parent = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    while let Some(p) = todo.pop() {
        all.push(p);
        todo.extend(
            parents
                .iter()
                .filter(|(_, parent)| *parent == p)
                .map(|(child, _)| *child),
        );
    }
    all
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 1 connections\n  Latency Distribution\n     50%  812.00us\n     75%    1.00ms\n     90%    1.10ms\n     99%    2.50ms\n  1000 requests in 1.00s, 1.00MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n  Non-2xx or 3xx responses: 3\nRequests/sec:   1000.50\nTransfer/sec:      1.00MB\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!(run.rps, 1000.5);
        assert_eq!(run.p50_ms, 0.812);
        assert_eq!(run.p99_ms, 2.5);
        assert_eq!(run.failed, 6);
        assert_eq!(run.requests, 1000);
    }

    #[test]
    fn a_response_is_complete_with_its_body() {
        assert!(!complete(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"));
        assert!(complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
    }
}
