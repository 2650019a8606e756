//! `weft bench proxy`: the service proxy at scale, in namespaces of its own. It plans and applies N Services of
//! E endpoints from empty, then one added Service and one changed endpoint as the agent does them (the
//! snapshot changes by those objects; the planner re-plans what changed and the proxier syncs), prints rule
//! counts, time and memory, and measures TCP connect latency through a ClusterIP with few and with N Services
//! in the same run.

use super::{connect_latency, ms, peak_rss_mb, print_latency, quantile};
use anyhow::{Context, Result};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_model::{Object, Snapshot};
use weft_netlink::Netns;
use weft_proxy::{Planner, Proxier};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// Connects per latency measurement.
    #[arg(long, default_value_t = 2000)]
    connects: usize,
    /// Runs, each from fresh namespaces; the summary gives each figure's median and range.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The figures summed up over runs, with what docs/benchmarks.md publishes for them (no peer can run here:
/// kube-proxy needs a cluster; its published add-one-Service time is 141 ms).
const ANCHORS: [(&str, &str, &str); 4] = [
    ("from empty", " ms", "790–832 ms"),
    ("add one Service at 10k", " ms", "15.9–17.4 ms"),
    ("change one endpoint at 10k", " ms", "5.1–6.5 ms"),
    ("connect p50 at 10k / at 10", "", "0.99–1.01"),
];

pub fn run(args: Args) -> Result<()> {
    let mut runs: Vec<[f64; 4]> = Vec::new();
    for i in 0..args.runs {
        println!("run {} of {}", i + 1, args.runs);
        runs.push(once(&args)?);
    }
    super::peer::print_runs("published: 2-core machine, idle, 2026-11-24, six runs", &ANCHORS, &runs);
    Ok(())
}

/// Removes the benchmark's namespaces whatever happens.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Netns::remove(n);
        }
    }
}

const SERVER: &str = "10.77.0.2";
const TARGET_IP: &str = "10.96.0.2";

/// One run; prints its figures and returns those of [`ANCHORS`].
fn once(args: &Args) -> Result<[f64; 4]> {
    let tag = format!("weftbench{}", std::process::id());
    let names = ["c", "s", "fc", "fs"].map(|n| format!("{tag}-{n}"));
    let _cleanup = Namespaces(names.to_vec());
    // Two client/server pairs: one holds the N-Service table, the other a 10-Service one, so connects to both can
    // be interleaved and the machine's noise falls on both alike.
    let (client, _server) = pair(&names[0], &names[1])?;
    let (few_client, _few_server) = pair(&names[2], &names[3])?;
    let ctx = weft_proxy::Context {
        node: "node-1".into(),
        cluster_cidr: "10.244.0.0/16".parse()?,
    };
    let target = SocketAddr::new(TARGET_IP.parse()?, 80);
    println!("services {} x {} endpoints", args.services, args.endpoints);
    few_client.run(|| Proxier::new().sync(weft_proxy::plan(&snapshot(10, args.endpoints), &ctx)))?;
    let figures = client.run(|| -> weft_netlink::Result<_> {
        // Each change makes a new snapshot sharing the objects it leaves alone, as a watch delta does.
        let mut snap = Arc::new(snapshot(args.services, args.endpoints));
        let mut planner = Planner::default();
        let started = Instant::now();
        let ruleset = planner.plan(&snap, &ctx);
        let planned = started.elapsed();
        let counts = ruleset.counts();
        if let Ok(path) = std::env::var("WEFT_BENCH_DUMP") {
            let _ = std::fs::write(path, ruleset.full());
        }
        let mut proxier = Proxier::new();
        let full = proxier.sync(ruleset)?;
        let from_empty = started.elapsed();
        // One more Service on top.
        for object in service_objects(args.services, args.endpoints, None) {
            Arc::make_mut(&mut snap).insert(object);
        }
        let add = step(&mut planner, &mut proxier, &snap, &ctx)?;
        // One endpoint of one Service changes: its slice has a new version.
        for object in service_objects(7, args.endpoints, Some("2")) {
            if object.kind() == "EndpointSlice" {
                Arc::make_mut(&mut snap).insert(object);
            }
        }
        let change = step(&mut planner, &mut proxier, &snap, &ctx)?;
        Ok((planned, from_empty, full, add, change, counts))
    })?;
    // Connects alternate between the two tables in batches of 50.
    let (mut latency_few, mut latency_many) = (Vec::new(), Vec::new());
    for _ in 0..args.connects.div_ceil(50) {
        latency_few.extend(few_client.run(|| Ok(connect_latency(target, 50)))?);
        latency_many.extend(client.run(|| Ok(connect_latency(target, 50)))?);
    }
    latency_few.sort_by(f64::total_cmp);
    latency_many.sort_by(f64::total_cmp);
    let (planned, from_empty, full, add, change, counts) = figures;
    println!(
        "ruleset: {} chains, {} rules, {} set and map elements",
        counts.0, counts.1, counts.2
    );
    println!(
        "from empty: {:.0} ms (plan {:.0} ms, nft {:.0} ms, {:.1} MB script)",
        ms(from_empty),
        ms(planned),
        ms(full.elapsed),
        full.script as f64 / 1e6
    );
    let steps = [ms(add.0 + add.1.elapsed), ms(change.0 + change.1.elapsed)];
    for (label, (plan, report)) in [("add one Service", add), ("change one endpoint", change)] {
        println!(
            "{label}: {:.1} ms (plan {:.1} ms, sync {:.1} ms, {} bytes of nft text{})",
            ms(plan + report.elapsed),
            ms(plan),
            ms(report.elapsed),
            report.script,
            if report.netlink { ", sent over netlink" } else { "" }
        );
    }
    print_latency("via ClusterIP, 10 Services", &latency_few);
    print_latency(&format!("via ClusterIP, {} Services", args.services), &latency_many);
    println!(
        "connect p50 with {} Services / with 10 (interleaved in batches of 50): {:.2}",
        args.services,
        quantile(&latency_many, 0.5) / quantile(&latency_few, 0.5)
    );
    println!("peak RSS of this process (planner + applier): {:.1} MB", peak_rss_mb());
    Ok([
        ms(from_empty),
        steps[0],
        steps[1],
        quantile(&latency_many, 0.5) / quantile(&latency_few, 0.5),
    ])
}

/// What the agent does with a changed snapshot: plan (only what changed) and sync. Returns the planning time
/// and the sync's report.
fn step(
    planner: &mut Planner,
    proxier: &mut Proxier,
    snap: &Arc<Snapshot>,
    ctx: &weft_proxy::Context,
) -> weft_netlink::Result<(Duration, weft_proxy::apply::Report)> {
    let started = Instant::now();
    let ruleset = planner.plan(snap, ctx);
    let planned = started.elapsed();
    Ok((planned, proxier.sync(ruleset)?))
}

/// A veth between the two namespaces: client 10.77.0.1, server 10.77.0.2.
/// A client and a server namespace joined by a veth, with five listeners on the server: the endpoints of the
/// measured Service.
fn pair(client_name: &str, server_name: &str) -> Result<(Netns, Netns)> {
    let client = Netns::create(client_name)?;
    let server = Netns::create(server_name)?;
    wire(&client, &server)?;
    let listeners: Vec<TcpListener> = server.run(|| {
        (0..5)
            .map(|i| TcpListener::bind((SERVER, 8080 + i)).map_err(|e| weft_netlink::Error::NotFound(e.to_string())))
            .collect()
    })?;
    for l in listeners {
        std::thread::spawn(move || for _ in l.incoming() {});
    }
    Ok((client, server))
}

fn wire(client: &Netns, server: &Netns) -> Result<()> {
    let mut c = client.handle()?;
    let mut s = server.handle()?;
    c.add_veth("eth0", 1500, "eth0", server.fd(), None)?;
    for (h, addr) in [(&mut c, "10.77.0.1/24"), (&mut s, "10.77.0.2/24")] {
        let lo = h.link_by_name("lo")?.context("lo")?.index;
        h.set_up(lo)?;
        let eth0 = h.link_by_name("eth0")?.context("eth0")?.index;
        h.add_address(eth0, addr.parse()?)?;
        h.set_up(eth0)?;
    }
    // ClusterIPs need a route before the proxy rewrites them, as on a real node (its default route).
    c.add_route(&weft_netlink::Route::via("0.0.0.0/0".parse()?, SERVER.parse()?))?;
    Ok(())
}

/// `services` Services of `endpoints` endpoints each, at resourceVersion 1; Service 0 is the measured one (its
/// endpoints are the server's listeners), the others point at addresses that never answer.
fn snapshot(services: usize, endpoints: usize) -> Snapshot {
    let objects: Vec<Object> = (0..services)
        .flat_map(|i| service_objects(i, endpoints, None))
        .collect();
    Snapshot::new(1, objects)
}

/// Service `i` and its EndpointSlices. With `bumped` (a resourceVersion), the slice of that version has its
/// endpoints shifted by one address: one gone, one new.
fn service_objects(i: usize, endpoints: usize, bumped: Option<&str>) -> Vec<Object> {
    let name = format!("s{i}");
    let ip = if i == 0 {
        TARGET_IP.to_string()
    } else {
        format!("10.{}.{}.{}", 100 + (i >> 16), (i >> 8) & 255, i & 255)
    };
    let version = bumped.unwrap_or("1");
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "bench", "resourceVersion": "1"},
        "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": "TCP"}]}});
    let eps: Vec<_> = (0..endpoints)
        .map(|e| {
            let addr = if i == 0 {
                SERVER.to_string()
            } else {
                let n = i * endpoints + e + usize::from(bumped.is_some());
                format!("10.{}.{}.{}", 128 + (n >> 16), (n >> 8) & 255, n & 255)
            };
            json!({"addresses": [addr], "nodeName": "node-2", "conditions": {"ready": true}})
        })
        .collect();
    let meta = |slice: String| {
        json!({"name": slice, "namespace": "bench", "resourceVersion": version,
            "labels": {"kubernetes.io/service-name": name}})
    };
    // Service 0's endpoints differ by port: one listener each.
    let slices: Vec<_> = if i == 0 {
        (0..endpoints.min(5))
            .map(|e| json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta(format!("{name}-{e}")),
                "addressType": "IPv4", "ports": [{"port": 8080 + e, "protocol": "TCP"}], "endpoints": [eps[e].clone()]}))
            .collect()
    } else {
        vec![
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta(format!("{name}-x")),
            "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}], "endpoints": eps}),
        ]
    };
    std::iter::once(svc)
        .chain(slices)
        .filter_map(|v| weft_model::manifest::from_value(v).ok())
        .collect()
}
