//! Entering a pod: its network namespace, a private mount namespace in which the pod's own /etc/resolv.conf,
//! /etc/hosts and /etc/hostname cover the host's (what `ip netns exec` does with /etc/netns/NAME), and its own
//! UTS namespace with the pod's hostname. Pod processes and `weft exec` enter the same way.

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

#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The namespace to join (/run/netns/NAME).
    pub netns: PathBuf,
    /// A directory holding the files of `POD_FILES`; none for host-network pods, which see the node's.
    pub files: Option<PathBuf>,
    /// The UTS hostname; none keeps the host's.
    pub hostname: Option<String>,
    /// The pod's ServiceAccount files, bound over `SERVICE_ACCOUNT_MOUNT`; none when it has none mounted.
    pub service_account: Option<PathBuf>,
}

impl Sandbox {
    /// The sandbox of a running pod: its own namespaces, or its node's for a host-network pod.
    pub fn of_pod(paths: &crate::spec::Paths, pod: &k8s_openapi::api::core::v1::Pod) -> Sandbox {
        let spec = pod.spec.as_ref();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        // Written by the kubelet when the pod started, unless the pod opted out.
        let service_account = Some(paths.pod_dir(uid).join(SERVICE_ACCOUNT_DIR)).filter(|d| d.is_dir());
        if spec.and_then(|s| s.host_network) == Some(true) {
            let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or_default();
            return Sandbox {
                netns: PathBuf::from("/run/netns").join(paths.node_netns(node)),
                files: None,
                hostname: None,
                service_account,
            };
        }
        Sandbox {
            netns: PathBuf::from("/run/netns").join(paths.pod_netns(uid)),
            files: Some(paths.pod_dir(uid)),
            hostname: Some(spec.and_then(|s| s.hostname.clone()).unwrap_or(name)),
            service_account,
        }
    }

    /// A command that runs `argv` inside the sandbox.
    pub fn command(&self, argv: &[String]) -> Result<Command> {
        let Some((program, args)) = argv.split_first() else {
            return Err(crate::Error::Invalid("no command given".into()));
        };
        let netns = File::open(&self.netns).map_err(io(format!("opening {}", self.netns.display())))?;
        // Everything the child needs is prepared here: between fork and exec only system calls run.
        let mut binds: Vec<(CString, CString)> = match &self.files {
            Some(dir) => POD_FILES
                .iter()
                .map(|f| Ok((cstring(&dir.join(f))?, cstring(&Path::new("/etc").join(f))?)))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        if let Some(dir) = &self.service_account {
            binds.push((cstring(dir)?, cstring(Path::new(SERVICE_ACCOUNT_MOUNT))?));
        }
        let hostname = self.hostname.clone();
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: the closure only makes system calls (setns, unshare, mount, sethostname) on data prepared
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
                    for (from, to) in &binds {
                        mount(
                            Some(from.as_c_str()),
                            to.as_c_str(),
                            None::<&str>,
                            MsFlags::MS_BIND,
                            None::<&str>,
                        )?;
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
}
