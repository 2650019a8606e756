//! Network namespaces. Work inside another namespace runs on a short-lived thread that joins it, so no
//! long-lived thread (and no async runtime worker) ever changes namespace.

use crate::error::{Error, Result};
use crate::socket::Handle;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
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

    /// Creates the named namespace `/run/netns/NAME`, as `ip netns add` does, so every tool finds it.
    pub fn create(name: &str) -> Result<Netns> {
        let path = named_path(name)?;
        share_netns_dir()?;
        // Exclusive creation of the mount target: two creators of one name never share a namespace.
        File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| Error::Netns {
                path: path.clone(),
                source,
            })?;
        let made = std::thread::scope(|scope| {
            scope
                .spawn(|| -> std::result::Result<(), nix::Error> {
                    unshare(CloneFlags::CLONE_NEWNET)?;
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        path.as_str(),
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                })
                .join()
                .unwrap_or(Err(nix::Error::EIO))
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(Error::Netns { path, source: e.into() });
        }
        Netns::open(&path)
    }

    /// Removes the named namespace; the kernel frees it once no process or mount holds it. Absent is fine.
    pub fn remove(name: &str) -> Result<bool> {
        let path = named_path(name)?;
        match umount2(path.as_str(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) => {}
            Err(nix::Error::ENOENT) => return Ok(false),
            Err(e) => return Err(Error::Netns { path, source: e.into() }),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::Netns { path, source }),
        }
    }

    /// Names of the namespaces under /run/netns.
    pub fn list() -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(NETNS_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Netns {
                    path: NETNS_DIR.into(),
                    source,
                });
            }
        };
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
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

const NETNS_DIR: &str = "/run/netns";

fn named_path(name: &str) -> Result<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::NotFound(format!("network namespace name {name:?}")));
    }
    Ok(format!("{NETNS_DIR}/{name}"))
}

/// Makes /run/netns a shared mount point, as iproute2 does, so a namespace unmounted here is also unmounted in
/// the mount namespaces of processes started earlier (pods), instead of being kept alive by their copies.
fn share_netns_dir() -> Result<()> {
    let fail = |e: nix::Error| Error::Netns {
        path: NETNS_DIR.into(),
        source: e.into(),
    };
    std::fs::create_dir_all(NETNS_DIR).map_err(|source| Error::Netns {
        path: NETNS_DIR.into(),
        source,
    })?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>) {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(nix::Error::EINVAL) => {
            let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
            mount(Some(NETNS_DIR), NETNS_DIR, None::<&str>, bind, None::<&str>).map_err(fail)?;
            mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>).map_err(fail)
        }
        Err(e) => Err(fail(e)),
    }
}
