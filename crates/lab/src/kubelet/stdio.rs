//! A container's standard streams. Output goes to its log file; a container with `stdin: true` reads a pipe and
//! one with `tty: true` runs on a terminal whose output is copied to the log, as kubelet's runtimes do. The input
//! ends (the pipe's writer, the terminal's master) stay with the supervisor in [`Inputs`], where `attach -i`
//! finds them. `stdinOnce`: the first attach session takes the writer, so the container reads EOF when that
//! session closes its stdin.
//!
//! The input ends live in the supervisor: a container keeps its log across a supervisor restart, but its stdin
//! pipe reads EOF and its terminal hangs up (the lab has no per-container shim to hold them).

use k8s_openapi::api::core::v1::Container;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use weft_apiserver::cluster::Input;
use weft_model::k8s_openapi;

/// The input ends of the running containers that have one, by pod uid and container name.
#[derive(Default)]
pub struct Inputs(Mutex<HashMap<(String, String), Held>>);

struct Held {
    input: Input,
    once: bool,
}

impl Inputs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a started container's input end.
    pub fn insert(&self, uid: &str, container: &str, input: Input, once: bool) {
        self.lock()
            .insert((uid.to_string(), container.to_string()), Held { input, once });
    }

    /// Forgets a container's input end once it exited (its next run gets a new one).
    pub fn remove(&self, uid: &str, container: &str) {
        self.lock().remove(&(uid.to_string(), container.to_string()));
    }

    /// Forgets the input ends of a pod's containers (it stopped).
    pub fn remove_pod(&self, uid: &str) {
        self.lock().retain(|(pod, _), _| pod != uid);
    }

    /// The input of a running container for an attach session: its own handle, or for `stdinOnce` the only one.
    pub fn attach(&self, uid: &str, container: &str) -> Option<std::io::Result<Input>> {
        let mut inputs = self.lock();
        let key = (uid.to_string(), container.to_string());
        let held = inputs.get(&key)?;
        if held.once {
            return inputs.remove(&key).map(|held| Ok(held.input));
        }
        let terminal = held.input.terminal;
        Some(held.input.writer.try_clone().map(|writer| Input { writer, terminal }))
    }
}

/// How a container's streams are connected; the input end to keep once it started.
pub enum Wiring {
    /// stdin is /dev/null: nothing to attach to.
    Closed,
    Pipe(File),
    /// The terminal's master side: input, sizes, and the output to copy to the log.
    Terminal(File),
}

impl Wiring {
    /// Connects `command`'s streams for container `c`, writing its output to `log`.
    pub fn connect(command: &mut Command, c: &Container, log: File) -> std::io::Result<Wiring> {
        if c.tty == Some(true) {
            let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
            command
                .stdin(Stdio::from(pty.slave.try_clone()?))
                .stdout(Stdio::from(pty.slave.try_clone()?))
                .stderr(Stdio::from(pty.slave));
            // SAFETY: only system calls between fork and exec. The terminal (on fds 0-2 by then) becomes the
            // controlling terminal of a new session, so a shell gets job control and ^C reaches it.
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let master = File::from(pty.master);
            copy_to_log(master.try_clone()?, log)?;
            return Ok(Wiring::Terminal(master));
        }
        let err = log.try_clone()?;
        command.stdout(log).stderr(err);
        if c.stdin == Some(true) {
            let (reader, writer) = std::io::pipe()?;
            command.stdin(reader);
            return Ok(Wiring::Pipe(File::from(std::os::fd::OwnedFd::from(writer))));
        }
        command.stdin(Stdio::null());
        Ok(Wiring::Closed)
    }

    /// The input end to keep, if any.
    pub fn input(self) -> Option<Input> {
        match self {
            Wiring::Closed => None,
            Wiring::Pipe(writer) => Some(Input {
                writer,
                terminal: false,
            }),
            Wiring::Terminal(writer) => Some(Input { writer, terminal: true }),
        }
    }
}

/// Copies what the container writes on its terminal to its log, until the terminal's last slave closes (the
/// master then reads EIO).
fn copy_to_log(mut master: File, mut log: File) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("tty-log".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = master.read(&mut buf) {
                if log.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
