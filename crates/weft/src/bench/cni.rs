//! `weft bench cni`: N pods, one after another, through ADD and then DEL, as containerd runs a plugin
//! chain (one exec per plugin, config on stdin, env vars). Everything happens in namespaces the
//! benchmark makes and removes: a node namespace per side and one namespace per pod. Weft's plugins and the
//! reference plugins (Debian's containernetworking-plugins) take the same conflists in interleaved rounds.

use super::peer::{Better, Paired, header};
use super::quantile;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Pods per scenario.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Rounds; each runs both scenarios with weft's plugins and then with the peer's.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Directory holding the plugin binaries, called by type name (bridge, host-local, portmap) the way
    /// runtimes call them; default: a directory of links to the weft-cni next to this binary.
    #[arg(long)]
    cni_bin_dir: Option<PathBuf>,
    /// The peer's plugin directory: Debian's containernetworking-plugins (the reference plugins).
    #[arg(long, default_value = "/usr/lib/cni")]
    peer_bin_dir: PathBuf,
}

/// Deletes the named namespaces and the scratch directory whatever happens.
struct Scratch {
    names: Vec<String>,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let batch: String = self.names.iter().map(|n| format!("netns delete {n}\n")).collect();
        let _ = ip_batch(&batch);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip_batch(batch: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running ip")?;
    child.stdin.take().context("ip stdin")?.write_all(batch.as_bytes())?;
    if !child.wait()?.success() {
        bail!("ip -batch failed");
    }
    Ok(())
}

struct Timing {
    add_ms: Vec<f64>,
    del_ms: Vec<f64>,
    peak_rss_kb: i64,
}

impl Timing {
    /// ADD p50, ADD p95, DEL p50, DEL p95 (ms) and the peak RSS of one exec (MB).
    fn figures(mut self) -> [f64; 5] {
        self.add_ms.sort_by(f64::total_cmp);
        self.del_ms.sort_by(f64::total_cmp);
        [
            quantile(&self.add_ms, 0.5),
            quantile(&self.add_ms, 0.95),
            quantile(&self.del_ms, 0.5),
            quantile(&self.del_ms, 0.95),
            self.peak_rss_kb as f64 / 1024.0,
        ]
    }
}

pub fn run(args: Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("weft bench cni needs root: it creates network namespaces");
    }
    if !args.peer_bin_dir.join("bridge").is_file() {
        bail!(
            "{}/bridge not found: install containernetworking-plugins (scripts/deps.sh) or pass --peer-bin-dir",
            args.peer_bin_dir.display()
        );
    }
    let tag = format!("wb{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    // One node namespace per side, so neither finds the other's bridge, tables or rules.
    let nodes = [format!("{tag}-weft"), format!("{tag}-peer")];
    let pods: Vec<String> = (0..args.pods).map(|i| format!("{tag}-p{i}")).collect();
    let mut scratch = Scratch {
        names: nodes.to_vec(),
        dir: dir.clone(),
    };
    scratch.names.extend(pods.iter().cloned());
    let bin_dir = match args.cni_bin_dir {
        Some(d) => d,
        None => link_weft_cni(&dir)?,
    };
    let batch: String = scratch.names.iter().map(|n| format!("netns add {n}\n")).collect();
    ip_batch(&batch)?;
    let mut node_ns = Vec::new();
    for node in &nodes {
        node_ns.push(File::open(format!("/run/netns/{node}")).context("opening a node namespace")?);
        Command::new("ip")
            .args(["-n", node, "link", "set", "lo", "up"])
            .status()?;
    }
    let sides = [
        (bin_dir.as_path(), &node_ns[0]),
        (args.peer_bin_dir.as_path(), &node_ns[1]),
    ];

    println!(
        "weft bench cni: {} pods, sequential ADD then DEL, {} rounds interleaved: weft's plugins ({}), then the \
         reference plugins ({})",
        args.pods,
        args.rounds,
        bin_dir.display(),
        args.peer_bin_dir.display()
    );
    let scenarios = [("(a) bridge+host-local+masq", false), ("(b) (a) + portmap", true)];
    // [scenario][figure]: ADD p50, ADD p95, DEL p50, DEL p95, peak RSS.
    let mut figures: Vec<Vec<Paired>> = (0..scenarios.len())
        .map(|_| (0..5).map(|_| Paired::new()).collect())
        .collect();
    for round in 0..args.rounds {
        for (s, (name, portmap)) in scenarios.iter().enumerate() {
            let mut both = Vec::new();
            for (side, (bin, node)) in sides.iter().enumerate() {
                let state = dir.join(format!("r{round}-s{s}-{side}"));
                both.push(scenario(bin, node, &state, &pods, *portmap)?.figures());
            }
            println!(
                "round {} {name}: ADD p50 {:.2} / {:.2} ms, DEL p50 {:.2} / {:.2} ms (weft / reference)",
                round + 1,
                both[0][0],
                both[1][0],
                both[0][2],
                both[1][2]
            );
            for (f, paired) in figures[s].iter_mut().enumerate() {
                paired.push(both[0][f], both[1][f]);
            }
        }
    }
    header("reference", Better::Lower);
    for (s, (name, _)) in scenarios.iter().enumerate() {
        for (f, (label, unit)) in [
            ("ADD p50", " ms"),
            ("ADD p95", " ms"),
            ("DEL p50", " ms"),
            ("DEL p95", " ms"),
            ("peak RSS of one exec", " MB"),
        ]
        .iter()
        .enumerate()
        {
            figures[s][f].print(&format!("{} {label}", &name[..3]), unit, Better::Lower);
        }
    }
    drop(scratch);
    Ok(())
}

/// A directory where bridge, host-local, portmap and loopback are links to weft-cni.
fn link_weft_cni(dir: &std::path::Path) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let weft_cni = me.with_file_name("weft-cni");
    if !weft_cni.is_file() {
        bail!(
            "{} not found: build it (cargo build --release) or pass --cni-bin-dir",
            weft_cni.display()
        );
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for name in ["bridge", "host-local", "portmap", "loopback"] {
        std::os::unix::fs::symlink(&weft_cni, bin.join(name))?;
    }
    Ok(bin)
}

fn scenario(
    bin: &std::path::Path,
    node_ns: &File,
    state: &std::path::Path,
    pods: &[String],
    portmap: bool,
) -> Result<Timing> {
    let bridge = json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0",
        "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true, "stateDir": state.join("weft"),
        "ipam": { "type": "host-local", "subnet": "10.253.0.0/16", "dataDir": state.join("ipam") }
    });
    let mut t = Timing {
        add_ms: Vec::new(),
        del_ms: Vec::new(),
        peak_rss_kb: 0,
    };
    let mut results = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let netns = format!("/run/netns/{pod}");
        let id = format!("bench{i}");
        let start = Instant::now();
        let (result, rss) = exec(bin, "bridge", "ADD", &id, &netns, node_ns, &bridge)?;
        t.peak_rss_kb = t.peak_rss_kb.max(rss);
        let mut prev = result.clone();
        if portmap {
            let pm = portmap_conf(state, &prev, i);
            let (r, rss) = exec(bin, "portmap", "ADD", &id, &netns, node_ns, &pm)?;
            t.peak_rss_kb = t.peak_rss_kb.max(rss);
            prev = r;
        }
        t.add_ms.push(start.elapsed().as_secs_f64() * 1e3);
        results.push(prev);
    }
    for (i, pod) in pods.iter().enumerate() {
        let netns = format!("/run/netns/{pod}");
        let id = format!("bench{i}");
        let start = Instant::now();
        // DEL runs the chain in reverse, each plugin with the cached result.
        if portmap {
            let pm = portmap_conf(state, &results[i], i);
            t.peak_rss_kb = t
                .peak_rss_kb
                .max(exec(bin, "portmap", "DEL", &id, &netns, node_ns, &pm)?.1);
        }
        let mut conf = bridge.clone();
        conf["prevResult"] = results[i].clone();
        t.peak_rss_kb = t
            .peak_rss_kb
            .max(exec(bin, "bridge", "DEL", &id, &netns, node_ns, &conf)?.1);
        t.del_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(t)
}

fn portmap_conf(state: &std::path::Path, prev: &Value, i: usize) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "portmap", "snat": true, "stateDir": state.join("weft"),
        "runtimeConfig": { "portMappings": [{ "hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp" }] },
        "prevResult": prev
    })
}

/// One plugin exec inside the node namespace; returns its stdout JSON and its peak RSS in kB.
fn exec(
    bin: &std::path::Path,
    plugin: &str,
    command: &str,
    id: &str,
    netns: &str,
    node_ns: &File,
    conf: &Value,
) -> Result<(Value, i64)> {
    let fd = node_ns.as_fd().try_clone_to_owned()?;
    let mut cmd = Command::new(bin.join(plugin));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: setns is async-signal-safe; the child joins the node namespace before exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().with_context(|| format!("running {plugin}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(conf.to_string().as_bytes())?;
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().context("stdout")?, &mut stdout)?;
    let (status, rss) = wait_rusage(child.id() as i32)?;
    let json: Value = if stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&stdout)?
    };
    if status != 0 {
        bail!("{plugin} {command} for {id} failed: {json}");
    }
    Ok((json, rss))
}

/// Reaps the child and returns its exit status and peak RSS (kB).
fn wait_rusage(pid: i32) -> Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((libc::WEXITSTATUS(status), usage.ru_maxrss))
}
