//! `weft bench drift` (root): in a lab, how long a node's agent takes to put back what someone else removed:
//! all of its nftables tables after `nft flush ruleset`, an overlay route deleted with `ip route del`, and with
//! `--overlay vxlan` the VXLAN device deleted. Each try removes the object from the node's namespace, then polls
//! the kernel (every 0.2 ms, over netlink) until it is back whole: timed from the removal having been committed.

use super::dns::manifest;
use super::dns_change::Lab;
use super::{ms, quantile};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use weft_lab::spec::Paths;
use weft_netlink::Handle;

#[derive(clap::Args)]
pub struct Args {
    /// Removals of each kind.
    #[arg(long, default_value_t = 20)]
    tries: usize,
    /// Services in the lab (the proxy's table the agent rebuilds).
    #[arg(long, default_value_t = 100)]
    services: usize,
    #[arg(long, default_value = "host-gw")]
    overlay: String,
    /// The lab's name (default `dr-bench-PID`).
    #[arg(long)]
    lab: Option<String>,
}

const TABLES: [&str; 3] = ["inet weft", "inet weft-policy", "inet weft-cni"];
const POLL: Duration = Duration::from_micros(200);
const GIVE_UP: Duration = Duration::from_secs(10);

/// Polls `done` until it holds; the time since `since`.
fn until(since: Instant, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
    loop {
        if done()? {
            return Ok(since.elapsed());
        }
        if since.elapsed() > GIVE_UP {
            bail!("{what}: not repaired within {GIVE_UP:?}");
        }
        std::thread::sleep(POLL);
    }
}

fn tables_present() -> Result<bool> {
    let present: BTreeSet<String> = weft_netlink::nftables::tables()?
        .into_iter()
        .filter(|(family, _)| *family == 1)
        .map(|(_, name)| format!("inet {name}"))
        .collect();
    Ok(TABLES.iter().all(|t| present.contains(*t)))
}

/// A node holding the three tables once synced, and its namespace: weft-cni's table comes with the first pod on
/// a node, and the lab's scheduler may put every pod on one node.
fn node_with_tables(paths: &Paths) -> Result<(String, weft_netlink::Netns)> {
    let started = Instant::now();
    loop {
        for name in ["node-1", "node-2"] {
            let node = weft_netlink::Netns::open(&format!("/run/netns/{}", paths.node_netns(name)))?;
            if node.run(|| Ok(tables_present()))?? {
                return Ok((name.to_string(), node));
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("no node holds the three tables after 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The overlay's routes (protocol 247) by destination.
fn overlay_routes(handle: &mut Handle) -> Result<BTreeSet<String>> {
    Ok(handle
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == weft_agent::overlay::ROUTE_PROTOCOL)
        .map(|r| r.dst.to_string())
        .collect())
}

/// What each kind of removal took to be repaired, sorted, in ms.
struct Figures(Vec<(String, Vec<f64>)>);

fn measure(args: &Args) -> Result<Figures> {
    let mut handle = Handle::new()?;
    let want = overlay_routes(&mut handle)?;
    if want.is_empty() {
        bail!("node-1 has no overlay routes");
    }
    let mut figures = Vec::new();
    let mut flush = Vec::new();
    for _ in 0..args.tries {
        weft_netlink::nft::run(&["flush", "ruleset"], "")?;
        let since = Instant::now();
        flush.push(ms(until(since, "nft flush ruleset", tables_present)?));
    }
    figures.push(("`nft flush ruleset` → the 3 tables back".to_string(), flush));
    let mut route = Vec::new();
    for _ in 0..args.tries {
        let victim = handle
            .routes()?
            .into_iter()
            .find(|r| r.protocol == weft_agent::overlay::ROUTE_PROTOCOL)
            .context("no overlay route to delete")?;
        handle.delete_route(&victim)?;
        let since = Instant::now();
        route.push(ms(until(since, "ip route del", || {
            Ok(overlay_routes(&mut handle)? == want)
        })?));
    }
    figures.push(("`ip route del` of an overlay route → back".to_string(), route));
    if args.overlay == "vxlan" {
        let device = weft_agent::overlay::VXLAN_DEVICE;
        let (mut deleted, mut called) = (Vec::new(), Vec::new());
        for _ in 0..args.tries {
            let old = handle.link_by_name(device)?.context("no VXLAN device")?.index;
            // The deletion returns only once the kernel has unregistered the device (RCU grace periods), after
            // announcing it: the agent may have started on it already, so the time from the call is the bound.
            let call = Instant::now();
            handle.delete_link(old)?;
            let since = Instant::now();
            // A new device (a new index), up, with the routes through it.
            let back = until(since, "ip link del", || {
                let back = handle.link_by_name(device)?.is_some_and(|l| l.index != old && l.up);
                Ok(back && overlay_routes(&mut handle)? == want)
            })?;
            deleted.push(ms(back));
            called.push(ms(since - call + back));
        }
        figures.push((format!("`ip link del {device}` → device and its routes back"), deleted));
        figures.push((
            "the same, from the deletion's call (its own time included)".to_string(),
            called,
        ));
    }
    for (_, xs) in &mut figures {
        xs.sort_by(f64::total_cmp);
    }
    Ok(Figures(figures))
}

pub fn run(args: Args) -> Result<()> {
    let lab = Lab {
        weft: std::env::current_exe().context("finding the weft binary")?,
        name: args
            .lab
            .clone()
            .unwrap_or_else(|| format!("dr-bench-{}", std::process::id() % 100_000)),
    };
    lab.weft(&["lab", "up", "--nodes", "2", "--overlay", &args.overlay], "")?;
    if args.services > 0 {
        lab.weft(&["apply", "-f", "-"], &manifest(args.services, false))?;
    }
    let (name, node) = node_with_tables(&Paths::new(&lab.name))?;
    let figures = node.run(|| Ok(measure(&args)))??;
    println!(
        "drift on {name} of a 2-node {} lab with {} Services, {} tries each (repaired = polled from the kernel):",
        args.overlay, args.services, args.tries
    );
    for (what, xs) in figures.0 {
        println!(
            "  {what}: p50 {:.1} ms, max {:.1} ms",
            quantile(&xs, 0.5),
            xs.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
