//! `weft bench observe`: what watching flows costs, in namespaces of its own (root). Two server namespaces, the
//! same but for one thing: the agent's flow collector (conntrack events and NFLOG, named and kept as on a node)
//! listens in one. TCP connect latency from a client to each, interleaved in batches, gives the ratio with
//! observation on to off; then the client opens new connections at a fixed rate (10,000/s by default) to the
//! observed one, and the collector thread's CPU time over that stretch is the agent's cost.

use super::{connect_latency, print_latency, quantile};
use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use weft_agent::flows::Flows;
use weft_netlink::Netns;

#[derive(clap::Args)]
pub struct Args {
    /// Connects per latency measurement (each server).
    #[arg(long, default_value_t = 4000)]
    connects: usize,
    /// New connections a second during the CPU measurement.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of load during the CPU measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
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

/// Conntrack in the servers' namespaces (the policy table's first rule does the same on a node).
const TABLE: &str = "table inet bench {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tct state established,related accept\n\t}\n}\n";

pub fn run(args: Args) -> Result<()> {
    let tag = format!("weftobs{}", std::process::id());
    let names = ["client", "observed", "plain"].map(|n| format!("{tag}-{n}"));
    let _cleanup = Namespaces(names.to_vec());
    let client = Netns::create(&names[0])?;
    let observed = Netns::create(&names[1])?;
    let plain = Netns::create(&names[2])?;
    let mut c = client.handle()?;
    let lo = c.link_by_name("lo")?.context("lo")?.index;
    c.set_up(lo)?;
    for (i, server) in [&observed, &plain].into_iter().enumerate() {
        let (ours, theirs) = (format!("s{i}"), "eth0");
        c.add_veth(&ours, 1500, theirs, server.fd(), None)?;
        let mut s = server.handle()?;
        let lo = s.link_by_name("lo")?.context("lo")?.index;
        s.set_up(lo)?;
        let index = s.link_by_name(theirs)?.context("eth0")?.index;
        s.add_address(index, format!("10.78.{i}.2/24").parse()?)?;
        s.set_up(index)?;
        let index = c.link_by_name(&ours)?.context("veth")?.index;
        c.add_address(index, format!("10.78.{i}.1/24").parse()?)?;
        c.set_up(index)?;
        server.run(|| {
            weft_netlink::nft::run(&["-f", "-"], TABLE)?;
            // Closed connections leave conntrack at once instead of after two minutes of TIME_WAIT (the client
            // resets them anyway).
            weft_netlink::sysctl::set("net/netfilter/nf_conntrack_tcp_timeout_close", "1")?;
            let listener = TcpListener::bind(format!("10.78.{i}.2:8080"))
                .map_err(|e| weft_netlink::Error::NotFound(e.to_string()))?;
            std::thread::spawn(move || for _ in listener.incoming() {});
            Ok(())
        })?;
    }
    let flows = Flows::new("bench", weft_agent::flows::CAPACITY);
    observed.run(|| flows.start().map_err(weft_netlink::Error::NotFound))?;
    let thread = collector_thread().context("finding the collector thread")?;
    let observed_addr: SocketAddr = "10.78.0.2:8080".parse()?;
    let plain_addr: SocketAddr = "10.78.1.2:8080".parse()?;

    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..args.connects.div_ceil(50) {
        // Either goes first in turn, so neither always follows the other.
        for observe in [round % 2 == 0, round % 2 == 1] {
            let (target, into) = if observe {
                (observed_addr, &mut on)
            } else {
                (plain_addr, &mut off)
            };
            into.extend(client.run(|| Ok(connect_latency(target, 50)))?);
        }
    }
    on.sort_by(f64::total_cmp);
    off.sort_by(f64::total_cmp);
    print_latency("observation off", &off);
    print_latency("observation on", &on);
    println!(
        "connect p50 observed / not (interleaved in batches of 50): {:.3}",
        quantile(&on, 0.5) / quantile(&off, 0.5)
    );

    let seen_before = flows.after(0).last().map_or(0, |f| f.seq);
    let cpu_before = cpu_time(thread)?;
    let started = Instant::now();
    let made = client.run(|| Ok(load(observed_addr, args.rate, Duration::from_secs(args.seconds))))?;
    let elapsed = started.elapsed();
    // The collector catches up on what is queued before its CPU is read.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_time(thread)? - cpu_before;
    let seen = flows.after(0).last().map_or(0, |f| f.seq) - seen_before;
    let rate = made as f64 / elapsed.as_secs_f64();
    println!(
        "load: {made} connections in {:.1} s ({rate:.0}/s; asked {}/s)",
        elapsed.as_secs_f64(),
        args.rate
    );
    println!(
        "collector: {seen} flows recorded, CPU {:.1}% of one core ({:.1} µs a flow)",
        cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0,
        cpu.as_secs_f64() * 1e6 / seen.max(1) as f64
    );
    Ok(())
}

/// Opens and resets connections to `target` at `rate` a second for `duration`; how many it made.
fn load(target: SocketAddr, rate: u64, duration: Duration) -> u64 {
    let started = Instant::now();
    let mut made = 0;
    while started.elapsed() < duration {
        // Paced in steps of a millisecond's worth.
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while made < due {
            if let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                reset_on_close(&stream);
            }
            made += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    made
}

/// SO_LINGER 0: closing sends a reset, so neither side keeps the connection in TIME_WAIT.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and option of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The id of this process's thread named `flows`.
fn collector_thread() -> Result<u32> {
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?;
        if std::fs::read_to_string(task.path().join("comm"))?.trim() == "flows" {
            return Ok(task.file_name().to_string_lossy().parse()?);
        }
    }
    bail!("no thread named flows")
}

/// User and system time of thread `tid` of this process.
fn cpu_time(tid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}
