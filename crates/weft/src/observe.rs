//! `weft observe`: the flows of every node, as `hubble observe` shows Cilium's. Each node's agent keeps its
//! own (`/flows` on its HTTP port, docs/observe.md); this merges them. In a lab the agents are reached inside
//! each node's network namespace (127.0.0.1:PORT); on a cluster (`--cluster`, with $KUBECONFIG or
//! ~/.kube/config) at each Node's InternalIP on the port the weft-node DaemonSet serves (host network, 9654).

use crate::client::Api;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weft_agent::flows::{Event, Flow, Verdict};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// Flows from or to this pod (NAME in --namespace, default "default", or NAMESPACE/NAME).
    #[arg(long)]
    pod: Option<String>,
    /// Flows from or to pods of this namespace.
    #[arg(short, long)]
    namespace: Option<String>,
    /// Flows addressed to this Service (NAME in --namespace, or NAMESPACE/NAME).
    #[arg(long)]
    service: Option<String>,
    /// FORWARDED, TRANSLATED or DROPPED.
    #[arg(long)]
    verdict: Option<Verdict>,
    /// Flows with this port at either end (or as the Service's port).
    #[arg(long)]
    port: Option<u16>,
    /// Only flows of the last DURATION (e.g. 30s, 5m, 1h).
    #[arg(long)]
    since: Option<String>,
    /// Keep printing new flows as they come.
    #[arg(short, long)]
    follow: bool,
    /// How many of the matching flows to print, the newest (0: all); not with --follow.
    #[arg(long, default_value_t = 20)]
    last: usize,
    /// table or json (one flow a line, the agents' JSON).
    #[arg(short, long, default_value = "table")]
    output: Output,
    /// A real cluster's agents ($KUBECONFIG), at each Node's InternalIP, instead of a lab's.
    #[arg(long)]
    cluster: bool,
    /// The agents' HTTP port (weft agent --metrics-address).
    #[arg(long, default_value_t = 9654)]
    agent_port: u16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Where one node's agent is reached.
pub enum Agent {
    /// Inside the lab node's network namespace.
    Netns {
        node: String,
        path: String,
    },
    Address {
        node: String,
        addr: SocketAddr,
    },
}

impl Agent {
    pub fn node(&self) -> &str {
        match self {
            Agent::Netns { node, .. } | Agent::Address { node, .. } => node,
        }
    }

    fn connect(&self, port: u16) -> Result<TcpStream> {
        let timeout = Duration::from_secs(5);
        match self {
            Agent::Netns { path, .. } => {
                let netns = weft_netlink::Netns::open(path)?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                // A socket belongs to the namespace it was made in, whichever thread uses it.
                Ok(netns.run(|| Ok(TcpStream::connect_timeout(&addr, timeout)))??)
            }
            Agent::Address { addr, .. } => Ok(TcpStream::connect_timeout(addr, timeout)?),
        }
    }

    /// The kept flows `query` asks for (`since=MS`, `after=SEQ`), oldest first.
    pub fn flows(&self, port: u16, query: &str) -> Result<Vec<Flow>> {
        let mut body = String::new();
        self.get(port, &format!("/flows?{query}"))?.read_to_string(&mut body)?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("reading the flows of {}", self.node()))?;
        Ok(serde_json::from_value(answer["flows"].clone())?)
    }

    /// Sends `GET path` and returns the reader positioned at the body.
    fn get(&self, port: u16, path: &str) -> Result<BufReader<TcpStream>> {
        let mut stream = self
            .connect(port)
            .with_context(|| format!("reaching the agent of {} on port {port}", self.node()))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: weft-agent\r\nConnection: close\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.contains(" 200 ") {
            bail!(
                "the agent of {} answered {:?} (is it a weft agent with --observe?)",
                self.node(),
                status.trim()
            );
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                return Ok(reader);
            }
        }
    }
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let filter = Filter::new(&args)?;
    let agents = agents(paths, args.cluster, args.agent_port)?;
    let since = filter.since.unwrap_or(0);
    match args.follow {
        false => {
            let mut flows = Vec::new();
            for agent in &agents {
                let list = agent.flows(args.agent_port, &format!("since={since}"))?;
                flows.extend(list.into_iter().filter(|f| filter.matches(f)));
            }
            flows.sort_by_key(|f| (f.time, f.node.clone(), f.seq));
            let skip = if args.last == 0 {
                0
            } else {
                flows.len().saturating_sub(args.last)
            };
            let mut out = std::io::stdout().lock();
            if matches!(args.output, Output::Table) {
                writeln!(out, "{}", header())?;
            }
            for flow in &flows[skip..] {
                writeln!(out, "{}", line(flow, args.output)?)?;
            }
        }
        true => {
            // From --since, else from now on.
            let since = filter.since.unwrap_or_else(now_ms);
            let (tx, rx) = mpsc::channel();
            for agent in agents {
                let tx = tx.clone();
                let reader = agent.get(args.agent_port, &format!("/flows?follow=1&since={since}"))?;
                std::thread::spawn(move || {
                    for line in reader.lines() {
                        let Ok(line) = line else { break };
                        if line.trim().is_empty() {
                            continue; // the agent's keep-alive
                        }
                        if let Ok(flow) = serde_json::from_str::<Flow>(&line)
                            && tx.send(flow).is_err()
                        {
                            return;
                        }
                    }
                    eprintln!("weft observe: the agent of {} closed the stream", agent.node());
                });
            }
            drop(tx);
            let mut out = std::io::stdout().lock();
            if matches!(args.output, Output::Table) {
                writeln!(out, "{}", header())?;
            }
            for flow in rx.iter().filter(|f| filter.matches(f)) {
                writeln!(out, "{}", line(&flow, args.output)?)?;
                out.flush()?;
            }
        }
    }
    Ok(0)
}

/// Every node's agent: the lab's, in their namespaces, or a cluster's at their InternalIPs.
pub fn agents(paths: &Paths, cluster: bool, agent_port: u16) -> Result<Vec<Agent>> {
    let api = if cluster {
        let file = std::env::var_os("KUBECONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".kube/config")))
            .context("no kubeconfig: set KUBECONFIG")?;
        Api::connect_kubeconfig(&file)?
    } else {
        Api::connect(paths)?
    };
    let mut agents = Vec::new();
    for node in crate::objects::list(&api, "Node", None)? {
        let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if !cluster {
            agents.push(Agent::Netns {
                path: format!("/run/netns/{}", paths.node_netns(&name)),
                node: name,
            });
            continue;
        }
        let ip = node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str()?.parse::<IpAddr>().ok())
            .with_context(|| format!("Node {name} has no InternalIP"))?;
        agents.push(Agent::Address {
            node: name,
            addr: SocketAddr::new(ip, agent_port),
        });
    }
    Ok(agents)
}

/// What the flags ask for; every flag given must match.
struct Filter {
    pod: Option<(String, String)>,
    namespace: Option<String>,
    service: Option<(String, String)>,
    verdict: Option<Verdict>,
    port: Option<u16>,
    since: Option<u64>,
}

impl Filter {
    fn new(args: &Args) -> Result<Filter> {
        let default_ns = args.namespace.clone().unwrap_or_else(|| "default".into());
        let split = |word: &str| match word.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (default_ns.clone(), word.to_string()),
        };
        let since = match &args.since {
            Some(d) => Some(now_ms().saturating_sub(duration(d)?.as_millis() as u64)),
            None => None,
        };
        Ok(Filter {
            pod: args.pod.as_deref().map(split),
            // With --pod or --service, --namespace only says where their names are.
            namespace: args
                .namespace
                .clone()
                .filter(|_| args.pod.is_none() && args.service.is_none()),
            service: args.service.as_deref().map(split),
            verdict: args.verdict,
            port: args.port,
            since,
        })
    }

    fn matches(&self, f: &Flow) -> bool {
        let ends = [&f.source, &f.destination];
        let is_pod = |(ns, name): &(String, String)| {
            ends.iter()
                .any(|p| p.namespace.as_deref() == Some(ns.as_str()) && p.name.as_deref() == Some(name.as_str()))
        };
        self.pod.as_ref().is_none_or(is_pod)
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| ends.iter().any(|p| p.namespace.as_deref() == Some(ns.as_str())))
            && self.service.as_ref().is_none_or(|(ns, name)| {
                f.service
                    .as_ref()
                    .is_some_and(|s| &s.namespace == ns && &s.name == name)
            })
            && self.verdict.is_none_or(|v| f.verdict == v)
            && self.port.is_none_or(|port| {
                ends.iter().any(|p| p.port == port) || f.service.as_ref().is_some_and(|s| s.port == port)
            })
            && self.since.is_none_or(|t| f.time >= t)
    }
}

/// `100ms`, `30s`, `5m`, `2h`, `1d`.
fn duration(text: &str) -> Result<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("bad duration {text:?} (e.g. 30s, 5m, 1h)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => bail!("bad duration {text:?} (e.g. 30s, 5m, 1h)"),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const COLUMNS: [(&str, usize); 8] = [
    ("TIME", 12),
    ("NODE", 10),
    ("VERDICT", 10),
    ("PROTO", 5),
    ("SOURCE", 32),
    ("DESTINATION", 32),
    ("SERVICE", 24),
    ("DETAIL", 0),
];

fn header() -> String {
    let cells: Vec<String> = COLUMNS.iter().map(|(name, _)| name.to_string()).collect();
    row(&cells)
}

fn row(cells: &[String]) -> String {
    let mut out = String::new();
    for (cell, (_, width)) in cells.iter().zip(COLUMNS) {
        out.push_str(&format!("{cell:<width$}  "));
    }
    out.trim_end().to_string()
}

/// One flow as a table row or a JSON line.
fn line(f: &Flow, output: Output) -> Result<String> {
    if matches!(output, Output::Json) {
        return Ok(serde_json::to_string(f)?);
    }
    let ms = f.time % 86_400_000;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    let service = f
        .service
        .as_ref()
        .map_or("-".to_string(), |s| format!("{}/{}:{}", s.namespace, s.name, s.port));
    let detail = match (&f.policy, f.event, &f.counters) {
        (Some(p), _, _) => format!(
            "{} of {} by {} ({})",
            p.direction.to_lowercase(),
            p.pod,
            if p.policies.is_empty() {
                "-".to_string()
            } else {
                p.policies.join(",")
            },
            p.rule
        ),
        (None, Event::End, Some(c)) => format!(
            "closed: {} pkts {} B out, {} pkts {} B back",
            c.packets, c.bytes, c.reply_packets, c.reply_bytes
        ),
        (None, Event::End, None) => "closed".into(),
        _ => "new".into(),
    };
    Ok(row(&[
        time,
        f.node.clone(),
        f.verdict.to_string(),
        f.protocol.clone(),
        f.source.label(),
        f.destination.label(),
        service,
        detail,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(duration("soon").is_err());
    }
}
