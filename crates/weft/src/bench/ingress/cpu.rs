//! Where a request's CPU goes: the user and system time and the context switches of the proxy (its whole process
//! tree: nginx's and HAProxy's workers too), of the backend and of wrk over a keep-alive run, divided by the
//! requests served. On two cores shared by the three, requests/s is about the cores' time over the sum of the
//! three's CPU per request, so these say which process's which part a proxy's requests/s is paying for.

use std::ops::Sub;
use std::time::Duration;

/// The kernel's clock ticks per second in /proc's times (USER_HZ: 100 on every Linux architecture, fixed by its
/// ABI whatever the kernel's own tick rate).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time used and context switches made, since a process started (or between two readings).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
    /// Voluntary (waits) and involuntary (preemptions) context switches.
    pub switches: u64,
}

impl Sub for Cpu {
    type Output = Cpu;

    fn sub(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            switches: self.switches.saturating_sub(earlier.switches),
        }
    }
}

impl std::iter::Sum for Cpu {
    fn sum<I: Iterator<Item = Cpu>>(iter: I) -> Cpu {
        iter.fold(Cpu::default(), |a, b| Cpu {
            user: a.user + b.user,
            system: a.system + b.system,
            switches: a.switches + b.switches,
        })
    }
}

/// A process's CPU time and context switches per request, in µs and switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerRequest {
    pub user_us: f64,
    pub system_us: f64,
    pub switches: f64,
}

impl Cpu {
    pub fn per_request(self, requests: u64) -> PerRequest {
        let n = requests.max(1) as f64;
        PerRequest {
            user_us: self.user.as_secs_f64() * 1e6 / n,
            system_us: self.system.as_secs_f64() * 1e6 / n,
            switches: self.switches as f64 / n,
        }
    }
}

impl PerRequest {
    pub fn total_us(&self) -> f64 {
        self.user_us + self.system_us
    }
}

/// Process `pid`'s (all its threads') CPU time, and its live threads' context switches (a thread that ended
/// took its count with it; the proxies' threads live as long as they do).
pub fn process(pid: u32) -> Cpu {
    let times = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| times(&stat))
        .unwrap_or_default();
    let switches = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .map(|status| switches(&status))
        .sum();
    Cpu { switches, ..times }
}

/// Process `pid`'s and all its descendants'.
pub fn tree(pid: u32) -> Cpu {
    super::load::tree(pid).into_iter().map(process).sum()
}

/// This process's waited-for children's (a child run to its end between two readings: wrk).
pub fn children() -> Cpu {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return Cpu::default();
    };
    let duration = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64) + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Cpu {
        user: duration(usage.user_time()),
        system: duration(usage.system_time()),
        switches: (usage.voluntary_context_switches() + usage.involuntary_context_switches()).max(0) as u64,
    }
}

/// utime and stime of a /proc/PID/stat line (fields 14 and 15, counted from the pid; the command before them,
/// in parentheses, may hold spaces).
fn times(stat: &str) -> Option<Cpu> {
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    // After the command: state (field 3) … utime is field 14, the 12th from state.
    let user: u64 = after.nth(11)?.parse().ok()?;
    let system: u64 = after.next()?.parse().ok()?;
    let tick = |t: u64| Duration::from_micros(t * (1_000_000 / TICKS_PER_SECOND));
    Some(Cpu {
        user: tick(user),
        system: tick(system),
        switches: 0,
    })
}

/// voluntary_ctxt_switches + nonvoluntary_ctxt_switches of a /proc/PID/task/TID/status.
fn switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            let value = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))?;
            value.trim().parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_switches_are_read() {
        let stat = "4242 (weft ingress) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 3 0 100 0";
        let cpu = times(stat).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(750));
        let status = "Name:\tweft\nvoluntary_ctxt_switches:\t10\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(switches(status), 13);
    }

    #[test]
    fn this_process_has_used_cpu() {
        let start = process(std::process::id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spins = 0u64;
        loop {
            let used = process(std::process::id()) - start;
            if used.user + used.system >= Duration::from_millis(20) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{used:?} after {spins} spins");
            spins = spins.wrapping_add(std::hint::black_box(1));
        }
    }
}
