//! Entering a pod: its network namespace, a private mount namespace in which the pod's own /etc/resolv.conf,
//! /etc/hosts and /etc/hostname cover the host's (what `ip netns exec` does with /etc/netns/NAME), and its own
//! UTS namespace with the pod's hostname. Pod processes and `weft exec` enter the same way. A container's
//! volumes, its image's files and a node's own directories are bind mounts in that mount namespace.

use crate::error::{Result, io};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use weft_model::k8s_openapi;

/// Files a pod sees instead of the host's.
pub const POD_FILES: &[&str] = &["resolv.conf", "hosts", "hostname"];
/// Where a pod finds its ServiceAccount's token, the cluster CA and its namespace, as in Kubernetes.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The directory of a pod's own dir holding those files.
pub const SERVICE_ACCOUNT_DIR: &str = "serviceaccount";

/// A bind mount in the sandbox's mount namespace (recursive, so mounts below `source` come along).
#[derive(Clone, Debug, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    /// The namespace to join (/run/netns/NAME).
    pub netns: PathBuf,
    /// A directory holding the files of `POD_FILES`; none for host-network pods, which see the node's.
    pub files: Option<PathBuf>,
    /// The UTS hostname; none keeps the host's.
    pub hostname: Option<String>,
    /// The pod's ServiceAccount files, bound over `SERVICE_ACCOUNT_MOUNT`; none when it has none mounted.
    pub service_account: Option<PathBuf>,
    /// Further binds, made in order after those above (a node's view, the image's files, the volumes).
    pub binds: Vec<Bind>,
}

impl Sandbox {
    /// The sandbox of a running pod's first container: its own namespaces (or its node's network for a
    /// host-network pod), its image's files and its volumes.
    pub fn of_pod(paths: &crate::spec::Paths, pod: &k8s_openapi::api::core::v1::Pod) -> Sandbox {
        use crate::kubelet::{image, volumes};
        let spec = pod.spec.as_ref();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        let container = spec.and_then(|s| s.containers.first());
        let mut binds = image::binds(paths, container.and_then(|c| c.image.as_deref()));
        if let Some(c) = container {
            let fs = crate::node_fs::NodeFs::new(paths, node);
            binds.extend(volumes::binds(pod, c, &fs, &paths.pod_dir(uid)).unwrap_or_default());
        }
        // Written by the kubelet when the pod started, unless the pod opted out.
        let service_account = Some(paths.pod_dir(uid).join(SERVICE_ACCOUNT_DIR))
            .filter(|d| d.is_dir() && !container.is_some_and(|c| volumes::mounts_at(c, SERVICE_ACCOUNT_MOUNT)));
        if spec.and_then(|s| s.host_network) == Some(true) {
            return Sandbox {
                netns: PathBuf::from("/run/netns").join(paths.node_netns(node)),
                service_account,
                binds,
                ..Default::default()
            };
        }
        Sandbox {
            netns: PathBuf::from("/run/netns").join(paths.pod_netns(uid)),
            files: Some(paths.pod_dir(uid)),
            hostname: Some(spec.and_then(|s| s.hostname.clone()).unwrap_or(name)),
            service_account,
            binds,
        }
    }

    /// A command that runs `argv` inside the sandbox.
    pub fn command(&self, argv: &[String]) -> Result<Command> {
        let Some((program, args)) = argv.split_first() else {
            return Err(crate::Error::Invalid("no command given".into()));
        };
        let netns = File::open(&self.netns).map_err(io(format!("opening {}", self.netns.display())))?;
        let mut all: Vec<Bind> = match &self.files {
            Some(dir) => POD_FILES
                .iter()
                .map(|f| Bind {
                    source: dir.join(f),
                    target: Path::new("/etc").join(f),
                    read_only: false,
                })
                .collect(),
            None => Vec::new(),
        };
        if let Some(dir) = &self.service_account {
            all.push(Bind {
                source: dir.clone(),
                target: PathBuf::from(SERVICE_ACCOUNT_MOUNT),
                read_only: true,
            });
        }
        all.extend(self.binds.iter().cloned());
        // Everything the child needs is prepared here: between fork and exec only system calls run.
        let mut binds: Vec<(CString, CString, bool)> = Vec::with_capacity(all.len());
        for (i, bind) in all.iter().enumerate() {
            if !bind.source.exists() {
                return Err(crate::Error::Invalid(format!(
                    "{} does not exist",
                    bind.source.display()
                )));
            }
            mount_point(&all[..i], bind)?;
            binds.push((cstring(&bind.source)?, cstring(&bind.target)?, bind.read_only));
        }
        // The sources, opened in the child's mount namespace before any bind, so a bind may cover another's
        // source (a mount of the parent's namespace cannot be bound from there).
        let mut sources: Vec<libc::c_int> = vec![-1; binds.len()];
        let hostname = self.hostname.clone();
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: the closure only makes system calls (setns, unshare, open, mount, sethostname) on data prepared
        // before the fork; it allocates nothing and takes no locks.
        unsafe {
            command.pre_exec(move || {
                setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)?;
                let mut flags = CloneFlags::empty();
                if !binds.is_empty() {
                    flags |= CloneFlags::CLONE_NEWNS;
                }
                if hostname.is_some() {
                    flags |= CloneFlags::CLONE_NEWUTS;
                }
                if !flags.is_empty() {
                    unshare(flags)?;
                }
                if !binds.is_empty() {
                    // Slave, not private: namespaces unmounted on the host later also vanish here.
                    let slave = MsFlags::MS_REC | MsFlags::MS_SLAVE;
                    mount(None::<&str>, "/", None::<&str>, slave, None::<&str>)?;
                    for ((from, _, _), fd) in binds.iter().zip(sources.iter_mut()) {
                        // SAFETY: open(2) of a NUL-terminated path; the descriptor closes at exec.
                        *fd = libc::open(from.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                        if *fd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    for ((_, to, read_only), fd) in binds.iter().zip(&sources) {
                        let mut buf = [0u8; 32];
                        let from = fd_path(*fd, &mut buf);
                        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
                        mount(Some(from), to.as_c_str(), None::<&str>, bind, None::<&str>)?;
                        if *read_only {
                            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                            mount(None::<&str>, to.as_c_str(), None::<&str>, ro, None::<&str>)?;
                        }
                    }
                }
                if let Some(name) = &hostname {
                    nix::unistd::sethostname(name)?;
                }
                Ok(())
            });
        }
        Ok(command)
    }
}

/// Makes `bind`'s mount point where the child will look for it: inside the source of the last earlier bind
/// that covers it, else on the host. A missing one is created empty (a directory, or a file for a file), the
/// only change a sandbox makes outside its own mount namespace.
fn mount_point(earlier: &[Bind], bind: &Bind) -> Result<()> {
    let at = earlier
        .iter()
        .rev()
        .find_map(|b| {
            let rest = bind.target.strip_prefix(&b.target).ok()?;
            Some(b.source.join(rest))
        })
        .unwrap_or_else(|| bind.target.clone());
    if std::fs::symlink_metadata(&at).is_ok() {
        return Ok(());
    }
    let made = if bind.source.is_dir() {
        std::fs::create_dir_all(&at)
    } else {
        at.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(&at).map(drop))
    };
    made.map_err(io(format!("creating the mount point {}", at.display())))
}

/// `/proc/self/fd/FD` in `buf`, without allocating (it runs between fork and exec).
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd.unsigned_abs(), 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[PREFIX.len() + i] = *d;
    }
    buf[PREFIX.len() + len] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buf[..]).unwrap_or_default()
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| crate::Error::Invalid(format!("path {} holds a NUL byte", path.display())))
}

/// PATH inside pods: the usual directories, after the one holding `weft` so `weft probe` works in every pod.
pub fn pod_path(weft_bin: &Path) -> String {
    let usual = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    match weft_bin.parent() {
        Some(dir) => format!("{}:{usual}", dir.display()),
        None => usual.to_string(),
    }
}

/// The pod's /etc/hosts, as kubelet writes it.
pub fn hosts_file(ip: Option<&str>, hostname: &str, fqdn: Option<&str>) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file (weft lab).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if let Some(ip) = ip {
        match fqdn {
            Some(fqdn) => text.push_str(&format!("{ip}\t{fqdn}\t{hostname}\n")),
            None => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    text
}

/// The pod's /etc/resolv.conf for `dnsPolicy: ClusterFirst`, as kubelet writes it.
pub fn resolv_conf(nameserver: &str, namespace: &str, domain: &str) -> String {
    format!("nameserver {nameserver}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_as_kubelet_writes_them() {
        let r = resolv_conf("10.96.0.10", "web", "cluster.local");
        assert_eq!(
            r,
            "nameserver 10.96.0.10\nsearch web.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let h = hosts_file(Some("10.244.1.5"), "web-0", Some("web-0.web.default.svc.cluster.local"));
        assert!(h.ends_with("10.244.1.5\tweb-0.web.default.svc.cluster.local\tweb-0\n"));
        assert!(!hosts_file(None, "x", None).contains("\tx\n"));
    }

    #[test]
    fn missing_mount_points_are_made_empty_where_the_container_will_look() {
        let dir = std::env::temp_dir().join(format!("weft-mount-point-{}", crate::store::new_uid()));
        let (source_dir, source_file, cover) = (dir.join("src"), dir.join("src.sock"), dir.join("cover"));
        std::fs::create_dir_all(&source_dir).unwrap();
        std::fs::create_dir_all(&cover).unwrap();
        std::fs::write(&source_file, b"x").unwrap();
        let bind = |source: &Path, target: PathBuf| Bind {
            source: source.to_path_buf(),
            target,
            read_only: false,
        };
        // A directory's mount point is an empty directory, parents and all; a file's (a socket, a device) an
        // empty file.
        mount_point(&[], &bind(&source_dir, dir.join("host/opt/cni/bin"))).unwrap();
        mount_point(&[], &bind(&source_file, dir.join("host/run/app.sock"))).unwrap();
        assert!(dir.join("host/opt/cni/bin").is_dir());
        assert_eq!(std::fs::read_dir(dir.join("host/opt/cni/bin")).unwrap().count(), 0);
        assert_eq!(std::fs::read(dir.join("host/run/app.sock")).unwrap(), b"");
        // Below an earlier bind's target, it is made in that bind's source, which the container sees there.
        let earlier = [bind(&cover, dir.join("etc/app"))];
        mount_point(&earlier, &bind(&source_dir, dir.join("etc/app/conf.d"))).unwrap();
        assert!(cover.join("conf.d").is_dir() && !dir.join("etc").exists());
        // What exists is left as it is, whatever it is.
        mount_point(&[], &bind(&source_dir, source_file.clone())).unwrap();
        assert_eq!(std::fs::read(&source_file).unwrap(), b"x");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn descriptor_paths_are_written_in_place() {
        let mut buf = [0u8; 32];
        assert_eq!(fd_path(7, &mut buf).to_str().unwrap(), "/proc/self/fd/7");
        assert_eq!(fd_path(1234567, &mut buf).to_str().unwrap(), "/proc/self/fd/1234567");
    }
}
