//! Network namespaces. Work inside another namespace runs on a short-lived thread that joins it, so no
//! long-lived thread (and no async runtime worker) ever changes namespace.

use crate::error::{Error, Result};
use crate::socket::Handle;
use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};

#[derive(Debug)]
pub struct Netns {
    file: File,
    path: String,
}

impl Netns {
    /// Opens a namespace by path (/run/netns/NAME, /proc/PID/ns/net, ...).
    pub fn open(path: &str) -> Result<Netns> {
        let file = File::open(path).map_err(|source| Error::Netns {
            path: path.to_string(),
            source,
        })?;
        Ok(Netns {
            file,
            path: path.to_string(),
        })
    }

    /// The calling thread's own namespace.
    pub fn current() -> Result<Netns> {
        Netns::open("/proc/thread-self/ns/net")
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Runs `f` on a new thread inside this namespace and returns its value.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                        path: self.path.clone(),
                        source: e.into(),
                    })?;
                    f()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Command {
                        program: "netns".into(),
                        msg: format!("worker in {} panicked", self.path),
                    })
                })
        })
    }

    /// A netlink socket bound to this namespace, usable from any thread.
    pub fn handle(&self) -> Result<Handle> {
        self.run(Handle::new)
    }
}
