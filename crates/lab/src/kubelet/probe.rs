//! Container probes as kubelet runs them: `httpGet` (HTTP only; an HTTPS probe counts as passed when the port
//! accepts a connection), `tcpSocket` and `exec`, from the pod's network (its node's for a host-network pod),
//! after `initialDelaySeconds`, every `periodSeconds`, each within `timeoutSeconds`; `successThreshold` and
//! `failureThreshold` consecutive results change the verdict. gRPC probes always pass.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_model::k8s_openapi;

/// The probe's timings, with Kubernetes' defaults.
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// The wait before the next readiness try of a container that has not been Ready since it started, after
/// `failures` failed tries: kubelet re-runs such a probe each time it syncs the pod's status (its prober
/// manager's manual trigger), so a container turns Ready soon after it can rather than a whole period after its
/// first, too early, try. Here that is every `EARLY_WAIT` for the first `EARLY_TRIES` tries (a server is
/// usually ready within a second of starting: it is Ready at most 50 ms after it can be), then a doubling wait,
/// never longer than the period. Before the first success failures change nothing (the verdict is already "not
/// ready"), so trying sooner only makes Ready come sooner.
pub fn early_readiness_wait(t: &Timing, failures: u32) -> Duration {
    let wait = match failures.checked_sub(EARLY_TRIES) {
        None => EARLY_WAIT,
        Some(later) => EARLY_WAIT.saturating_mul(2u32 << later.min(16)),
    };
    wait.min(t.period)
}

/// See `early_readiness_wait`.
const EARLY_WAIT: Duration = Duration::from_millis(50);
const EARLY_TRIES: u32 = 20;

/// Counts consecutive results into a verdict.
pub struct Verdict {
    pub ok: bool,
    streak: u32,
}

impl Verdict {
    pub fn new(ok: bool) -> Verdict {
        Verdict { ok, streak: 0 }
    }

    /// Adds one result; true when the verdict changed.
    pub fn add(&mut self, passed: bool, t: &Timing) -> bool {
        if passed == self.ok {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let needed = if passed {
            t.success_threshold
        } else {
            t.failure_threshold
        };
        if self.streak >= needed {
            self.ok = passed;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// One try of a network probe (`httpGet`, `tcpSocket`) from inside `netns`; None for an `exec` probe, which
/// the caller runs in the container's sandbox.
pub fn network(p: &Probe, c: &Container, netns: &Path, pod_ip: &str, timeout: Duration) -> Option<bool> {
    let (host, port, http) = if let Some(h) = &p.http_get {
        let scheme = h.scheme.as_deref().unwrap_or("HTTP");
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        (h.host.clone(), &h.port, (scheme == "HTTP").then_some(path))
    } else if let Some(t) = &p.tcp_socket {
        (t.host.clone(), &t.port, None)
    } else if p.exec.is_some() {
        return None;
    } else {
        return Some(true);
    };
    let Some(port) = port_number(port, c) else {
        return Some(false);
    };
    let host = host.filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        return Some(false);
    };
    let addr = SocketAddr::new(ip, port);
    let Ok(ns) = weft_netlink::Netns::open(&netns.to_string_lossy()) else {
        return Some(false);
    };
    let connected = ns.run(|| Ok(TcpStream::connect_timeout(&addr, timeout)));
    let Ok(Ok(mut stream)) = connected else {
        return Some(false);
    };
    let Some(path) = http else { return Some(true) };
    Some(http_ok(&mut stream, &host, port, &path, timeout))
}

/// Sends a GET and reads the status line: 200-399 passes, as kubelet's prober decides.
fn http_ok(stream: &mut TcpStream, host: &str, port: u16, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    status_ok(&String::from_utf8_lossy(&head))
}

fn status_ok(head: &str) -> bool {
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    code.is_some_and(|c| (200..400).contains(&c))
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port_number(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => (c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_turn_results_into_a_verdict() {
        let p: Probe = serde_json::from_str(r#"{"successThreshold": 2, "failureThreshold": 3}"#).unwrap();
        let t = timing(&p);
        assert_eq!(t.period, Duration::from_secs(10));
        let mut v = Verdict::new(false);
        assert!(!v.add(true, &t));
        assert!(!v.add(false, &t), "a failure breaks the streak");
        assert!(!v.add(true, &t));
        assert!(v.add(true, &t) && v.ok);
        assert!(!v.add(false, &t) && !v.add(false, &t));
        assert!(v.add(false, &t) && !v.ok);
    }

    #[test]
    fn a_container_not_yet_ready_is_tried_again_sooner_than_its_period() {
        let p: Probe = serde_json::from_str(r#"{"periodSeconds": 1}"#).unwrap();
        let t = timing(&p);
        let waits: Vec<_> = (18..25).map(|n| early_readiness_wait(&t, n).as_millis()).collect();
        assert_eq!(waits, [50, 50, 100, 200, 400, 800, 1000]);
        assert_eq!(early_readiness_wait(&t, 0), Duration::from_millis(50));
        let slow = timing(&serde_json::from_str(r#"{"periodSeconds": 10}"#).unwrap());
        assert_eq!(early_readiness_wait(&slow, 40), Duration::from_secs(10));
    }

    #[test]
    fn ports_by_number_or_name_and_http_status() {
        let c: Container =
            serde_json::from_str(r#"{"name":"c","ports":[{"name":"health","containerPort":9099}]}"#).unwrap();
        assert_eq!(port_number(&IntOrString::String("health".into()), &c), Some(9099));
        assert_eq!(port_number(&IntOrString::String("nope".into()), &c), None);
        assert_eq!(port_number(&IntOrString::Int(80), &c), Some(80));
        assert!(status_ok("HTTP/1.1 200 OK\r\n"));
        assert!(status_ok("HTTP/1.0 302 Found\r\n"));
        assert!(!status_ok("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_ok(""));
    }
}
