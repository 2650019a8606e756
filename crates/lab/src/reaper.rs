//! One thread that waits for every container process of the supervisor, and for the delays before their restarts,
//! instead of a blocked thread per container (whose stacks were most of the supervisor's memory). Each process is
//! watched through its pidfd and reaped by its own pid, so the supervisor's other children (CNI plugins run with
//! `Command::output`, the agents) are left to whoever started them: never `waitpid(-1)` here.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Called with the exit code of a watched child, as a shell reports it (128 + signal when killed).
type Exited = Box<dyn FnOnce(i32) + Send>;
type Job = Box<dyn FnOnce() + Send>;

pub struct Reaper {
    epoll: OwnedFd,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    /// By the token registered with epoll.
    entries: HashMap<u64, (OwnedFd, Event)>,
}

enum Event {
    /// A child's pidfd: readable once the child has exited.
    Exit(Child, Exited),
    /// A timerfd: readable once its delay is over.
    Due(Job),
    /// The pidfd of a process another supervisor started (see `adopt`).
    Adopted(u32, Exited),
}

/// The exit code reported for an adopted process: not our child, so its real code is lost (kubelet reports a
/// container whose state it lost as terminated with 137, reason ContainerStatusUnknown).
pub const LOST_EXIT: i32 = 137;

impl Reaper {
    /// Starts the reaper's thread; it runs every callback, one at a time, until the process ends.
    pub fn start() -> io::Result<Arc<Reaper>> {
        // SAFETY: epoll_create1(2) returns a new fd or -1.
        let epoll = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let reaper = Arc::new(Reaper {
            epoll,
            waiting: Mutex::default(),
        });
        let me = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || me.run())?;
        Ok(reaper)
    }

    /// Reaps `child` once it exits and then calls `exited` with its exit code.
    pub fn watch(&self, child: Child, exited: impl FnOnce(i32) + Send + 'static) {
        let pidfd = pidfd_open(child.id());
        self.add(pidfd, Event::Exit(child, Box::new(exited)), Duration::ZERO);
    }

    /// Calls `exited` with `LOST_EXIT` once `pid` has exited: a process of a supervisor that was killed, which
    /// is not our child (its parent is now init), checked by `pidfile::live` to still be the recorded process.
    pub fn adopt(&self, pid: u32, exited: impl FnOnce(i32) + Send + 'static) {
        self.add(pidfd_open(pid), Event::Adopted(pid, Box::new(exited)), Duration::ZERO);
    }

    /// Calls `f` after `delay`.
    pub fn after(&self, delay: Duration, f: impl FnOnce() + Send + 'static) {
        self.add(timer(delay), Event::Due(Box::new(f)), delay);
    }

    fn add(&self, fd: io::Result<OwnedFd>, event: Event, delay: Duration) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => return fallback(event, delay, e),
        };
        let token = waiting.next;
        waiting.next += 1;
        let mut interest = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both fds are open and `interest` outlives the call. The entry is inserted before the lock is
        // released, so the reaper's thread finds it however soon the event comes.
        let added = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut interest,
            )
        };
        if added < 0 {
            return fallback(event, delay, io::Error::last_os_error());
        }
        waiting.entries.insert(token, (fd, event));
    }

    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: `events` is writable for as many entries as passed.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    -1,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("weft lab: waiting for containers: {e}");
                }
                continue;
            }
            for ready in &events[..n as usize] {
                let token = ready.u64;
                let entry = self
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entries
                    .remove(&token);
                let Some((fd, event)) = entry else { continue };
                // Removed explicitly: a child forked meanwhile may hold a copy of the fd until it execs, and
                // closing ours would then leave it registered.
                // SAFETY: both fds are open; a null event is allowed for EPOLL_CTL_DEL.
                unsafe {
                    libc::epoll_ctl(
                        self.epoll.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        fd.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
                drop(fd);
                match event {
                    Event::Exit(mut child, exited) => exited(exit_code(child.wait())),
                    Event::Due(job) => job(),
                    Event::Adopted(_, exited) => exited(LOST_EXIT),
                }
            }
        }
    }
}

/// When the kernel refuses another fd (limits), a thread of its own waits instead.
fn fallback(event: Event, delay: Duration, e: io::Error) {
    eprintln!("weft lab: cannot add to the reaper ({e}); waiting on a thread instead");
    let spawned = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || match event {
            Event::Exit(mut child, exited) => exited(exit_code(child.wait())),
            Event::Due(job) => {
                std::thread::sleep(delay);
                job()
            }
            Event::Adopted(pid, exited) => {
                // Not our child: nothing to wait on but its /proc entry (a zombie counts as gone).
                let gone = || {
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                        stat.rsplit(')')
                            .next()
                            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
                    })
                };
                while !gone() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                exited(LOST_EXIT)
            }
        });
    if let Err(e) = spawned {
        eprintln!("weft lab: cannot start a thread: {e}");
    }
}

fn exit_code(status: io::Result<std::process::ExitStatus>) -> i32 {
    status
        .ok()
        .and_then(|s| s.code().or(s.signal().map(|n| 128 + n)))
        .unwrap_or(128)
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new (close-on-exec) fd or -1. The pid is an
    // unreaped child of ours, or a process just checked to be the one its pid file recorded.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as RawFd)
}

fn timer(delay: Duration) -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create(2) returns a new fd or -1.
    let fd = owned(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) })?;
    // An all-zero time would disarm the timer rather than fire it at once.
    let delay = delay.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec {
            tv_sec: delay.as_secs() as libc::time_t,
            tv_nsec: delay.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `fd` is a timerfd, `spec` is valid and the old value is not asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn children_exiting_at_once_each_get_their_own_code_and_other_children_are_left_alone() {
        let reaper = Reaper::start().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut stdins = Vec::new();
        for i in 0..60 {
            // Each waits for its stdin to close, so that all exit together.
            let mut child = Command::new("sh")
                .args(["-c", &format!("read line; exit {i}")])
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            stdins.push(child.stdin.take().unwrap());
            let tx = tx.clone();
            reaper.watch(child, move |code| tx.send((i, code)).unwrap());
        }
        let killed = Command::new("sleep").arg("60").spawn().unwrap();
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(killed.id() as libc::pid_t, libc::SIGKILL) };
        let tx2 = tx.clone();
        reaper.watch(killed, move |code| tx2.send((-1, code)).unwrap());
        drop(stdins);
        // Children the reaper does not watch are still there for `output()` to reap.
        for _ in 0..5 {
            let out = Command::new("sh").args(["-c", "exit 7"]).output().unwrap();
            assert_eq!(out.status.code(), Some(7));
        }
        let mut codes = HashMap::new();
        for _ in 0..61 {
            let (i, code) = rx.recv_timeout(Duration::from_secs(10)).expect("every child reported");
            assert!(codes.insert(i, code).is_none(), "child {i} reported twice");
        }
        for i in 0..60 {
            assert_eq!(codes[&i], i, "exit code of child {i}");
        }
        assert_eq!(codes[&-1], 128 + libc::SIGKILL);
    }

    #[test]
    fn delayed_calls_run_in_the_order_of_their_deadlines() {
        let reaper = Reaper::start().unwrap();
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        for (delay, label) in [(60, "late"), (0, "now"), (20, "soon")] {
            let tx = tx.clone();
            reaper.after(Duration::from_millis(delay), move || {
                tx.send((label, started.elapsed())).unwrap()
            });
        }
        let got: Vec<(&str, Duration)> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("every call ran"))
            .collect();
        let labels: Vec<&str> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels, ["now", "soon", "late"]);
        assert!(
            got[2].1 >= Duration::from_millis(60),
            "not before its delay: {:?}",
            got[2].1
        );
    }
}
