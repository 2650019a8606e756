//! `/flows` on the agent's HTTP port (beside /healthz and /metrics), for `weft observe` and any UI:
//!
//! - `GET /flows?after=SEQ&since=MS` → `200`, `application/json`: `{"node": NAME, "flows": [FLOW, ...]}`, the kept
//!   flows with a sequence number above SEQ (default 0) seen at or after MS (milliseconds since the epoch;
//!   default 0), oldest first.
//! - `GET /flows?follow=1&after=SEQ&since=MS` → `200`, `application/x-ndjson`: the same flows, then each new
//!   one as it comes, one JSON object a line, until the client goes; an empty line every 15 s without flows
//!   keeps idle connections checked (readers skip empty lines).
//!
//! FLOW is [`super::Flow`] as JSON (docs/observe.md).

use super::Flows;
use super::record::Flow;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use weft_daemon::http::Extra;

const KEEPALIVE: Duration = Duration::from_secs(15);

pub struct Endpoint(pub Arc<Flows>);

/// The query of a `/flows` request.
#[derive(Debug, Default, PartialEq)]
struct Query {
    after: u64,
    since: u64,
    follow: bool,
}

fn query(path: &str) -> Option<Query> {
    let (route, params) = path.split_once('?').unwrap_or((path, ""));
    if route != "/flows" {
        return None;
    }
    let mut q = Query::default();
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "1"));
        match key {
            "after" => q.after = value.parse().unwrap_or(0),
            "since" => q.since = value.parse().unwrap_or(0),
            "follow" => q.follow = !matches!(value, "0" | "false"),
            _ => {}
        }
    }
    Some(q)
}

impl Extra for Endpoint {
    fn serve(&self, path: &str, stream: &mut TcpStream) -> Option<io::Result<()>> {
        let q = query(path)?;
        Some(if q.follow {
            follow(&self.0, &q, stream)
        } else {
            list(&self.0, &q, stream)
        })
    }
}

fn wanted<'a>(flows: &'a [Arc<Flow>], q: &'a Query) -> impl Iterator<Item = &'a Flow> + 'a {
    flows.iter().map(|f| &**f).filter(move |f| f.time >= q.since)
}

fn list(flows: &Flows, q: &Query, stream: &mut TcpStream) -> io::Result<()> {
    let kept = flows.after(q.after);
    let body = serde_json::json!({
        "node": flows.node(),
        "flows": wanted(&kept, q).collect::<Vec<_>>(),
    })
    .to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn follow(flows: &Flows, q: &Query, stream: &mut TcpStream) -> io::Result<()> {
    // No length: the body ends when the connection does.
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")?;
    stream.flush()?;
    let mut last = q.after;
    loop {
        let batch = flows.ring.wait_after(last, KEEPALIVE);
        let mut out = Vec::new();
        for flow in wanted(&batch, q) {
            serde_json::to_writer(&mut out, flow).map_err(io::Error::other)?;
            out.push(b'\n');
        }
        if let Some(f) = batch.last() {
            last = f.seq;
        }
        if out.is_empty() {
            out.push(b'\n');
        }
        stream.write_all(&out)?;
        stream.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_query() {
        assert_eq!(query("/metrics"), None);
        assert_eq!(query("/flows"), Some(Query::default()));
        assert_eq!(
            query("/flows?after=7&since=1000&follow"),
            Some(Query {
                after: 7,
                since: 1000,
                follow: true
            })
        );
        assert!(!query("/flows?follow=0").unwrap().follow);
    }
}
