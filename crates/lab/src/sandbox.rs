//! Entering a pod: its network namespace, a private mount namespace in which the pod's own /etc/resolv.conf,
//! /etc/hosts and /etc/hostname cover the host's (what `ip netns exec` does with /etc/netns/NAME), and its own
//! UTS namespace with the pod's hostname. Pod processes and `weft exec` enter the same way. A container's
//! volumes, its image's files and a node's own directories are bind mounts in that mount namespace.

use crate::error::{Result, io, kernel};
use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::Mode;
use nix::unistd::AccessFlags;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use weft_model::k8s_openapi;
use weft_netlink::Netns;

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
    /// The sandbox of container `container` of a running pod (None: its first): the pod's own namespaces (or
    /// its node's network for a host-network pod), the container's image's files and its volumes.
    pub fn of_pod(
        paths: &crate::spec::Paths,
        pod: &k8s_openapi::api::core::v1::Pod,
        container: Option<&str>,
    ) -> Sandbox {
        use crate::kubelet::{image, volumes};
        let spec = pod.spec.as_ref();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        let container = spec.and_then(|s| match container {
            Some(wanted) => (s.init_containers.iter().flatten().chain(&s.containers)).find(|c| c.name == wanted),
            None => s.containers.first(),
        });
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

    /// Starts `argv` inside the sandbox with environment `env`; `start` completes the command (its streams,
    /// working directory) and spawns it.
    ///
    /// `start` runs on a short-lived thread that has entered the sandbox itself: joined its network namespace,
    /// made a mount and UTS namespace of its own with the binds and the hostname. The child inherits those
    /// from the thread, so nothing is left to do between fork and exec and std starts it with posix_spawn (a
    /// vfork-style clone sharing the supervisor's memory until the exec) rather than fork, which copies the
    /// page tables of the whole supervisor. A bare program name is looked up in `env`'s PATH there, in the
    /// sandbox's view of the files (std would fork to search a PATH of the command's own). `start` keeps that
    /// fast path as long as it adds no `pre_exec` and sets no PATH (a terminal's session needs a `pre_exec`:
    /// std then forks from the same thread, which works as well).
    pub fn spawn<T: Send>(
        &self,
        argv: &[String],
        env: Env,
        start: impl FnOnce(Command) -> Result<T> + Send,
    ) -> Result<T> {
        let Some((program, args)) = argv.split_first() else {
            return Err(crate::Error::Invalid("no command given".into()));
        };
        let binds = self.all_binds();
        for (i, bind) in binds.iter().enumerate() {
            if !bind.source.exists() {
                return Err(crate::Error::Invalid(format!(
                    "{} does not exist",
                    bind.source.display()
                )));
            }
            mount_point(&binds[..i], bind)?;
        }
        let what = || format!("entering {}", self.netns.display());
        let netns = Netns::open(&self.netns.to_string_lossy()).map_err(kernel(what()))?;
        // A thread of its own, in the namespace, that ends after: its namespaces and mounts stay the sandbox's.
        let inside = netns.run(|| {
            Ok(self.enter(&binds).and_then(|()| {
                let (clear, vars) = match env {
                    Env::Only(vars) => (true, vars),
                    Env::Inherit(vars) => (false, vars),
                };
                let path = match vars.iter().rev().find(|(k, _)| k == "PATH") {
                    Some((_, path)) => Some(OsString::from(path)),
                    None if clear => None,
                    None => std::env::var_os("PATH"),
                };
                let mut command = Command::new(find_program(program, path.as_deref()));
                command.arg0(program).args(args);
                if clear {
                    command.env_clear();
                }
                command.envs(vars);
                start(command)
            }))
        });
        inside.map_err(kernel(what()))?
    }

    /// The binds in the order they are made: the pod's files over /etc, its ServiceAccount, then the rest.
    fn all_binds(&self) -> Vec<Bind> {
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
        all
    }

    /// Moves the calling thread, already in the sandbox's network namespace, into a mount and UTS namespace of
    /// its own holding `binds` and the hostname. The thread must end afterwards.
    fn enter(&self, binds: &[Bind]) -> Result<()> {
        let mut flags = CloneFlags::empty();
        if !binds.is_empty() {
            // A mount namespace needs the thread's own root and working directory (CLONE_FS) too.
            flags |= CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS;
        }
        if self.hostname.is_some() {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        if !flags.is_empty() {
            unshare(flags).map_err(sys("making the sandbox's namespaces"))?;
        }
        if !binds.is_empty() {
            // Slave, not private: namespaces unmounted on the host later also vanish here.
            let slave = MsFlags::MS_REC | MsFlags::MS_SLAVE;
            mount(None::<&str>, "/", None::<&str>, slave, None::<&str>).map_err(sys("making / a mount slave"))?;
            // The sources, opened in the new mount namespace before any bind, so a bind may cover another's
            // source (a mount of the host's namespace cannot be bound from here).
            let sources = binds
                .iter()
                .map(|b| {
                    let flags = OFlag::O_PATH | OFlag::O_CLOEXEC;
                    nix::fcntl::open(&b.source, flags, Mode::empty())
                        .map_err(sys(format!("opening {}", b.source.display())))
                })
                .collect::<Result<Vec<_>>>()?;
            for (bind, fd) in binds.iter().zip(&sources) {
                let from = format!("/proc/thread-self/fd/{}", fd.as_raw_fd());
                let what = || format!("binding {} at {}", bind.source.display(), bind.target.display());
                let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
                mount(Some(from.as_str()), &bind.target, None::<&str>, flags, None::<&str>).map_err(sys(what()))?;
                if bind.read_only {
                    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                    mount(None::<&str>, &bind.target, None::<&str>, ro, None::<&str>).map_err(sys(what()))?;
                }
            }
        }
        if let Some(name) = &self.hostname {
            nix::unistd::sethostname(name).map_err(sys(format!("setting the hostname {name}")))?;
        }
        Ok(())
    }
}

/// The environment of a command started in a sandbox.
pub enum Env {
    /// Exactly these variables.
    Only(Vec<(String, String)>),
    /// The calling process's, with these set over it.
    Inherit(Vec<(String, String)>),
}

/// Where `program` is: a name without a slash is looked up in `path` as execvp(3) does (glibc's /bin:/usr/bin
/// when there is none), taking the first executable file; a name found nowhere stays as it is, for the spawn
/// to fail on.
fn find_program(program: &str, path: Option<&OsStr>) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let path = path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|file| nix::unistd::access(file, AccessFlags::X_OK).is_ok() && file.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Adds what was being done to a failed system call.
fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> crate::Error {
    let what = what.into();
    move |errno| io(what)(errno.into())
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
    fn a_command_sees_the_pods_network_hostname_and_binds_and_the_caller_stays_outside() {
        if !weft_testkit::root() {
            return;
        }
        let ns = weft_testkit::Ns::new("sandbox");
        let dir = std::env::temp_dir().join(format!("weft-sandbox-{}", crate::store::new_uid()));
        let (files, tools) = (dir.join("pod"), dir.join("tools"));
        std::fs::create_dir_all(&files).unwrap();
        std::fs::create_dir_all(&tools).unwrap();
        for f in POD_FILES {
            std::fs::write(files.join(f), format!("the pod's {f}\n")).unwrap();
        }
        // A program found only through a bind, by its bare name: looked up in the sandbox's view of the files.
        let tool = tools.join("sandbox-tool");
        std::fs::write(&tool, "#!/bin/sh\necho \"tool $0\"\n").unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let bin = dir.join("bin");
        let sandbox = Sandbox {
            netns: PathBuf::from(ns.path()),
            files: Some(files.clone()),
            hostname: Some("sandboxed".into()),
            service_account: None,
            binds: vec![Bind {
                source: tools.clone(),
                target: bin.clone(),
                read_only: true,
            }],
        };
        let script = format!(
            "echo $0; hostname; cat /etc/hosts /etc/resolv.conf; readlink /proc/self/ns/net; touch {}/x || echo ro",
            bin.display()
        );
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let run = |argv: &[String]| {
            let env = Env::Only(vec![("PATH".into(), path.clone())]);
            let out = sandbox
                .spawn(argv, env, |mut c| c.output().map_err(io("running a command")))
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let theirs = format!(
            "net:[{}]",
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(ns.path()).unwrap())
        );
        assert_eq!(
            run(&["sh".into(), "-c".into(), script]),
            format!("sh\nsandboxed\nthe pod's hosts\nthe pod's resolv.conf\n{theirs}\nro\n")
        );
        assert_eq!(
            run(&["sandbox-tool".into()]),
            format!("tool {}/sandbox-tool\n", bin.display())
        );
        // The calling thread kept the host's namespaces; on the host the mount point is an empty directory.
        let host_hostname = nix::unistd::gethostname().unwrap();
        assert_ne!(host_hostname.to_string_lossy(), "sandboxed");
        assert_ne!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            PathBuf::from(theirs)
        );
        assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 0);
        // A program that is nowhere fails as a spawn error, not a panic.
        let env = Env::Only(vec![("PATH".into(), bin.display().to_string())]);
        let missing = sandbox.spawn(&["no-such-program".into()], env, |mut c| {
            c.status().map_err(io("running no-such-program"))
        });
        assert!(missing.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bare_names_are_looked_up_as_execvp_does() {
        assert_eq!(find_program("/bin/sh", None), PathBuf::from("/bin/sh"));
        assert_eq!(find_program("./run", Some(OsStr::new("/bin"))), PathBuf::from("./run"));
        assert_eq!(find_program("sh", None), PathBuf::from("/bin/sh"));
        assert_eq!(
            find_program("sh", Some(OsStr::new("relative:/usr/bin"))),
            PathBuf::from("/usr/bin/sh")
        );
        assert_eq!(find_program("no-such-program", None), PathBuf::from("no-such-program"));
        // A directory on the way is not a program.
        assert_eq!(find_program("bin", Some(OsStr::new("/usr:/"))), PathBuf::from("bin"));
    }
}
