//! `weft bench datapath` (root): iperf3 between pods of a weft lab, each path beside a bare one built by hand
//! the same way without weft (routed pod veths, the nodes on one switch, host-gw routes or a VXLAN device with
//! static neighbour and FDB entries) in throwaway namespaces, and the same bare path with conntrack on in its
//! nodes (which Services and NetworkPolicy need in any netfilter datapath). Rounds interleave weft, bare and bare
//! with conntrack and the ratios are taken per round. Then the lab is loaded with Services and NetworkPolicies selecting the server pods
//! and the same pairs are measured again beside the same bare paths.

use super::dns_change::Lab;
use super::peer::{Better, Paired, header};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_agent::overlay::{VXLAN_PORT, VXLAN_VNI};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// Overlays measured, each in a lab of its own (with its bare twin).
    #[arg(long, value_delimiter = ',', default_value = "host-gw,vxlan")]
    overlays: Vec<String>,
    /// Interleaved rounds per path (one weft run and one bare run each).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of each iperf3 run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Services loaded for the second pass (0 with --policies 0: no second pass).
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// NetworkPolicies loaded for the second pass, all selecting the server pods.
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// The weft binary that runs the labs (weft-cni beside it), default this one: another build's datapath
    /// beside the same bare paths, for a before/after.
    #[arg(long)]
    lab_weft: Option<std::path::PathBuf>,
}

const PORT: u16 = 5201;
/// The lab's pod MTU on each overlay (VXLAN's 50-byte header comes off the underlay's 1500).
fn pod_mtu(overlay: &str) -> u32 {
    if overlay == "vxlan" { 1450 } else { 1500 }
}

pub fn run(args: Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("weft bench datapath needs root: it builds labs and namespaces");
    }
    which("iperf3")?;
    println!(
        "weft bench datapath: iperf3 -t {} (one TCP stream), {} rounds of weft then bare per path; Gbit/s",
        args.seconds, args.rounds
    );
    let mut rows: Vec<(String, Paired)> = Vec::new();
    for overlay in &args.overlays {
        measure_overlay(&args, overlay, &mut rows)?;
    }
    header("bare", Better::Higher);
    for (label, paired) in &rows {
        paired.print(label, "", Better::Higher);
    }
    Ok(())
}

fn which(program: &str) -> Result<()> {
    match Command::new(program).arg("--version").stdout(Stdio::null()).status() {
        Ok(_) => Ok(()),
        Err(e) => bail!("{program}: {e} (scripts/deps.sh installs it)"),
    }
}

/// Both passes of one overlay: a lab, its bare twin, the paths measured before and after loading.
fn measure_overlay(args: &Args, overlay: &str, rows: &mut Vec<(String, Paired)>) -> Result<()> {
    let tag = format!("wbd{}", std::process::id() % 100_000);
    let lab = Lab {
        weft: match &args.lab_weft {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("finding the weft binary")?,
        },
        name: format!("{tag}-{}", overlay.replace('-', "")),
    };
    let started = Instant::now();
    lab.weft(
        &["lab", "up", "--nodes", "2", "--overlay", overlay, "-f", "-"],
        &pods_manifest(),
    )?;
    let paths = Paths::new(&lab.name);
    let pods = lab_pods(&paths)?;
    let bare = Bare::build(&tag, overlay)?;
    let mut servers = Servers(Vec::new());
    for (ns, _) in [&pods[1], &pods[2]] {
        servers.0.push(iperf3_server(ns)?);
    }
    for ns in [BARE_PODS[1].0, BARE_PODS[2].0] {
        servers.0.push(iperf3_server(&bare.name(ns))?);
    }
    println!(
        "{overlay}: lab and bare paths ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let same = (&pods[0].0, &pods[1].1, bare.name(BARE_PODS[0].0), BARE_PODS[1].1);
    let across = (&pods[0].0, &pods[2].1, bare.name(BARE_PODS[0].0), BARE_PODS[2].1);
    let pass = |label: &str, rows: &mut Vec<(String, Paired)>| -> Result<()> {
        for (path, (client, server, bare_client, bare_server)) in [("same node", &same), ("across nodes", &across)] {
            let (mut paired, mut tracked) = (Paired::new(), Paired::new());
            for _ in 0..args.rounds {
                let w = iperf3(client, server, args.seconds)?;
                let b = iperf3(bare_client, bare_server, args.seconds)?;
                bare.conntrack(true)?;
                let c = iperf3(bare_client, bare_server, args.seconds);
                bare.conntrack(false)?;
                paired.push(w, b);
                tracked.push(w, c?);
            }
            let row = format!("{path}, {overlay}{label}");
            println!(
                "{row}: weft {:?} bare {:?} bare with conntrack {:?}; load average {}",
                round2(&paired.weft),
                round2(&paired.peer),
                round2(&tracked.peer),
                super::peer::load_average()
            );
            rows.push((row.clone(), paired));
            rows.push((format!("{row}; bare with conntrack"), tracked));
        }
        Ok(())
    };
    pass("", rows)?;
    if args.services + args.policies > 0 {
        let took = load(&lab, &paths, args)?;
        println!(
            "{overlay}: {} Services and {} NetworkPolicies programmed on both nodes in {:.1} s",
            args.services,
            args.policies,
            took.as_secs_f64()
        );
        pass(
            &format!(", {}k Services + {} policies", args.services / 1000, args.policies),
            rows,
        )?;
    }
    drop(servers);
    drop(bare);
    drop(lab);
    Ok(())
}

fn round2(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|x| (x * 100.0).round() / 100.0).collect()
}

/// Client `a` and server `b` on node-1, server `c` on node-2, processes that only hold the namespaces (iperf3
/// runs in them from outside, as `kubectl exec` would).
fn pods_manifest() -> String {
    let pod = |name: &str, role: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"role": role}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "infinity"]}]}})
    };
    json!({"apiVersion": "v1", "kind": "List", "items": [
        pod("a", "client", "node-1"), pod("b", "server", "node-1"), pod("c", "server", "node-2")]})
    .to_string()
}

/// (network namespace name, pod IP) of pods a, b and c.
fn lab_pods(paths: &Paths) -> Result<Vec<(String, String)>> {
    let api = crate::client::Api::connect(paths)?;
    let pods = crate::objects::list(&api, "Pod", Some("default"))?;
    ["a", "b", "c"]
        .iter()
        .map(|name| {
            let pod = pods
                .iter()
                .find(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
                .with_context(|| format!("pod {name} missing"))?;
            let uid = pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .context("pod uid")?;
            let ip = pod.pointer("/status/podIP").and_then(Value::as_str).context("pod IP")?;
            Ok((paths.pod_netns(uid), ip.to_string()))
        })
        .collect()
}

/// Services (each selecting pods of its own) and NetworkPolicies that all select the server pods, policy 0
/// letting the client in on iperf3's port and the others peers that do not exist: every packet to a server
/// passes the service proxy's lookups and the server's ingress chain with all of them. Returns the time until
/// both agents have programmed the last object.
fn load(lab: &Lab, paths: &Paths, args: &Args) -> Result<Duration> {
    let mut items: Vec<Value> = (0..args.services)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
                "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}})
        })
        .collect();
    items.extend((0..args.policies).map(|i| {
        let from = if i == 0 {
            json!({"role": "client"})
        } else {
            json!({"peer": format!("p-{i}")})
        };
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": format!("pol-{i}")},
            "spec": {"podSelector": {"matchLabels": {"role": "server"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": from}}],
                    "ports": [{"protocol": "TCP", "port": PORT}]}]}})
    }));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let started = Instant::now();
    lab.weft(&["apply", "-f", "-"], &list)?;
    let api = crate::client::Api::connect(paths)?;
    let revision = ["Service", "NetworkPolicy"]
        .iter()
        .map(|kind| crate::objects::list(&api, kind, Some("default")))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .flatten()
        .filter_map(|o| o.pointer("/metadata/resourceVersion")?.as_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(180);
    while ["node-1", "node-2"]
        .iter()
        .any(|n| super::apply::synced(paths, n) < revision)
    {
        if Instant::now() > deadline {
            bail!("the agents did not program revision {revision} within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(started.elapsed())
}

/// Kills the iperf3 servers whatever happens.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn iperf3_server(netns: &str) -> Result<Child> {
    Command::new("ip")
        .args(["netns", "exec", netns, "iperf3", "-s", "-p", &PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s")
}

/// One iperf3 run from namespace `netns` to `server`: Gbit/s received. Retries while the server is not
/// listening yet (for up to 5 s).
fn iperf3(netns: &str, server: &str, seconds: u64) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "iperf3",
                "-J",
                "-c",
                server,
                "-p",
                &PORT.to_string(),
            ])
            .args(["-t", &seconds.to_string()])
            .output()
            .context("running iperf3")?;
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(bps) = report
            .pointer("/end/sum_received/bits_per_second")
            .and_then(Value::as_f64)
        {
            return Ok(bps / 1e9);
        }
        if Instant::now() > deadline {
            let error = report.get("error").and_then(Value::as_str).unwrap_or("no report");
            bail!("iperf3 from {netns} to {server}: {error}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bare pods: (suffix of the namespace, address, node).
const BARE_PODS: [(&str, &str, usize); 3] = [("a", "10.244.1.3", 1), ("b", "10.244.1.4", 1), ("c", "10.244.2.3", 2)];
/// The bare nodes' table that turns conntrack on.
const BARE_CT_TABLE: &str = "bare-conntrack";
/// Where the lab's pod side points its default route (a static neighbour: the host veth's MAC).
const POD_GATEWAY: &str = "169.254.1.1";

/// The bare twin of a two-node lab: namespaces `TAG-bare-…`, removed when dropped.
struct Bare {
    prefix: String,
    names: Vec<String>,
}

impl Drop for Bare {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

impl Bare {
    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Turns conntrack on or off in the bare nodes, as a weft node has it: every forwarded packet tracked (the
    /// one rule an established packet meets in weft's policy table), the overlay's own outer datagrams not (weft's
    /// `weft-overlay` table). What the bare path then lacks of a weft node is weft's rules, not conntrack.
    fn conntrack(&self, on: bool) -> Result<()> {
        let script = if on {
            format!(
                "table inet {BARE_CT_TABLE} {{\n\
                 chain forward {{ type filter hook forward priority filter; policy accept; ct state established,related accept; }}\n\
                 chain raw-in {{ type filter hook prerouting priority raw; policy accept; udp dport {VXLAN_PORT} notrack; }}\n\
                 chain raw-out {{ type filter hook output priority raw; policy accept; udp dport {VXLAN_PORT} notrack; }}\n}}\n"
            )
        } else {
            format!("delete table inet {BARE_CT_TABLE}\n")
        };
        for node in [self.name("n1"), self.name("n2")] {
            let ns = weft_netlink::Netns::open(&format!("/run/netns/{node}"))?;
            ns.run(|| weft_netlink::nft::apply(&script))
                .with_context(|| format!("conntrack {} in {node}", if on { "on" } else { "off" }))?;
        }
        Ok(())
    }

    /// The lab's wiring without weft: a switch (bridge) in a wire namespace, two nodes with `eth0` on it and
    /// forwarding on, and routed pods as weft-cni attaches them (a veth with the pod's /32 on the pod side and
    /// a /32 route to it on the node, the pod's default route via a static neighbour that is the host side's
    /// MAC). Across nodes: host-gw routes to the other node's pod CIDR, or a VXLAN device (weft's VNI and UDP
    /// port, no learning, MTU 1450) with a static neighbour and FDB entry for the other node's VTEP.
    fn build(tag: &str, overlay: &str) -> Result<Bare> {
        let prefix = format!("{tag}-bare-");
        let mut bare = Bare {
            names: Vec::new(),
            prefix,
        };
        let (wire, nodes) = (bare.name("wire"), [bare.name("n1"), bare.name("n2")]);
        let names: Vec<String> = [wire.clone(), nodes[0].clone(), nodes[1].clone()]
            .into_iter()
            .chain(BARE_PODS.iter().map(|(p, _, _)| bare.name(p)))
            .collect();
        for name in names {
            ip(None, &format!("netns add {name}"))?;
            bare.names.push(name.clone());
            ip(Some(&name), "link set lo up")?;
        }
        ip(Some(&wire), "link add sw type bridge\nlink set sw up")?;
        for (i, node) in nodes.iter().enumerate() {
            let n = i + 1;
            ip(
                Some(&wire),
                &format!(
                    "link add n{n} mtu 1500 type veth peer name eth0 mtu 1500 netns {node}\nlink set n{n} master sw up"
                ),
            )?;
            ip(
                Some(node),
                &format!("addr add 172.31.0.{n}/24 dev eth0\nlink set eth0 up"),
            )?;
            sysctl(node, "net/ipv4/ip_forward", "1")?;
        }
        let mtu = pod_mtu(overlay);
        for (i, (pod, addr, node)) in BARE_PODS.iter().enumerate() {
            let (pod_ns, node_ns) = (bare.name(pod), &nodes[node - 1]);
            let host_mac = format!("02:00:00:00:00:{:02x}", i + 1);
            ip(
                Some(node_ns),
                &format!(
                    "link add h{pod} address {host_mac} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pod_ns}\n\
                     link set h{pod} up\nroute add {addr}/32 dev h{pod} scope link"
                ),
            )?;
            ip(
                Some(&pod_ns),
                &format!(
                    "addr add {addr}/32 dev eth0\nlink set eth0 up\nroute add {POD_GATEWAY} dev eth0 scope link\n\
                     route add default via {POD_GATEWAY} dev eth0\n\
                     neigh add {POD_GATEWAY} lladdr {host_mac} dev eth0 nud permanent"
                ),
            )?;
        }
        for (i, node) in nodes.iter().enumerate() {
            let (me, peer) = (i + 1, 2 - i);
            let routes = if overlay == "vxlan" {
                format!(
                    "link add vx address 0e:57:00:00:01:{me:02x} mtu 1450 type vxlan id {VXLAN_VNI} local 172.31.0.{me} \
                     dev eth0 dstport {VXLAN_PORT} nolearning\n\
                     addr add 10.244.{me}.0/32 dev vx\nlink set vx up\n\
                     neigh add 10.244.{peer}.0 lladdr 0e:57:00:00:01:{peer:02x} dev vx nud permanent\n\
                     fdb append 0e:57:00:00:01:{peer:02x} dev vx dst 172.31.0.{peer} self permanent\n\
                     route add 10.244.{peer}.0/24 via 10.244.{peer}.0 dev vx onlink"
                )
            } else {
                format!("route add 10.244.{peer}.0/24 via 172.31.0.{peer} dev eth0")
            };
            ip(Some(node), &routes)?;
        }
        Ok(bare)
    }
}

/// `ip [-n NETNS] -batch -` of `lines` (`fdb` lines go to `bridge`, which takes the same batch form).
fn ip(netns: Option<&str>, lines: &str) -> Result<()> {
    let (fdb, rest): (Vec<&str>, Vec<&str>) = lines.lines().partition(|l| l.starts_with("fdb "));
    for (program, batch) in [("ip", rest.join("\n")), ("bridge", fdb.join("\n"))] {
        if batch.is_empty() {
            continue;
        }
        let mut cmd = Command::new(program);
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        let mut child = cmd
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {program}"))?;
        child.stdin.take().context("stdin")?.write_all(batch.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{program} -batch in {netns:?}: {}\n{batch}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    let ns = weft_netlink::Netns::open(&format!("/run/netns/{netns}"))?;
    ns.run(|| weft_netlink::sysctl::set(key, value))?;
    Ok(())
}
