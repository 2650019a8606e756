//! A node's own filesystem. Lab nodes share the host's, so each node has a directory (`nodes/NODE/root`) that
//! stands for its root: a pod's `hostPath` /opt/cni/bin on node-1 is `nodes/node-1/root/opt/cni/bin`, and the
//! CNI plugins of node-1 run with that node's /run and /var/lib/cni bound over the host's.
//! What the kernel shares (/proc, /sys, /dev, /lib/modules) and the pods' network namespaces (/run/netns) are
//! the host's.

use crate::error::{Error, Result, io};
use crate::sandbox::Bind;
use std::path::{Component, Path, PathBuf};

/// Paths every node sees as the host has them: the kernel is one, and so is the table of named namespaces.
const HOST_PATHS: &[&str] = &["/proc", "/sys", "/dev", "/lib/modules", "/run/netns"];
/// The node's directories its CNI plugins see instead of the host's: where a conflist points them (node
/// settings, state, IPAM).
const PLUGIN_VIEW: &[&str] = &["/run", "/var/lib/cni"];
/// The host's directories brought back under the node's /run in the plugins' view: the pods' namespaces
/// (`CNI_NETNS`) and the lab's state (the node's /opt/cni/bin, where the plugins themselves are, is in it).
const HOST_UNDER_RUN: &[&str] = &["/run/netns", "/run/weft/labs"];

#[derive(Clone, Debug)]
pub struct NodeFs {
    root: PathBuf,
}

impl NodeFs {
    pub fn new(paths: &crate::spec::Paths, node: &str) -> NodeFs {
        NodeFs {
            root: paths.node_root(node),
        }
    }

    /// A node whose root is `root` (tests use a throwaway directory).
    #[cfg(test)]
    pub fn at(root: PathBuf) -> NodeFs {
        NodeFs { root }
    }

    /// Where a path of the node is on the host; an error for a relative path or one with `..`.
    pub fn path(&self, on_node: &str) -> Result<PathBuf> {
        let path = Path::new(on_node);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(Error::Invalid(format!(
                "hostPath {on_node:?}: must be an absolute path without '..'"
            )));
        }
        if HOST_PATHS.iter().any(|h| path.starts_with(h)) {
            return Ok(path.to_path_buf());
        }
        let rest: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        Ok(self.root.join(rest))
    }

    /// Where a path as the node's CNI plugins see it (see `plugin_view`) is on the host; None for a relative one.
    pub fn plugin_path(&self, seen: &str) -> Option<PathBuf> {
        let path = Path::new(seen);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return None;
        }
        let own =
            PLUGIN_VIEW.iter().any(|p| path.starts_with(p)) && !HOST_UNDER_RUN.iter().any(|h| path.starts_with(h));
        Some(match own {
            true => self.root.join(path.strip_prefix("/").ok()?),
            false => path.to_path_buf(),
        })
    }

    /// The node's /opt/cni/bin, where the runtime finds CNI plugins.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.root.join("opt/cni/bin")
    }

    /// The node's /etc/cni/net.d, where the runtime finds its network configuration.
    pub fn net_d(&self) -> PathBuf {
        self.root.join("etc/cni/net.d")
    }

    /// The node's /etc/resolv.conf: what pods with `dnsPolicy: Default` (cluster DNS itself) get, as kubelet's
    /// `--resolv-conf`.
    pub fn resolv_conf(&self) -> PathBuf {
        self.root.join("etc/resolv.conf")
    }

    /// Makes the node's root with the directories a fresh node has (and /var/run → /run, as on the host), and a
    /// resolv.conf without nameservers: the lab has no way out, so cluster DNS forwards nothing (a forwarded
    /// question would only wait for the upstream's timeout, and glibc's search through AAAA asks many).
    pub fn prepare(&self) -> Result<()> {
        let mut dirs: Vec<PathBuf> = [self.cni_bin_dir(), self.net_d(), self.root.join("var/lib/cni")].to_vec();
        dirs.extend(HOST_UNDER_RUN.iter().map(|p| self.root.join(&p[1..])));
        for dir in dirs {
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let resolv = self.resolv_conf();
        if !resolv.exists() {
            std::fs::write(&resolv, "# A lab node: no resolvers outside the cluster.\n")
                .map_err(io(format!("writing {}", resolv.display())))?;
        }
        let var_run = self.root.join("var/run");
        if std::fs::symlink_metadata(&var_run).is_err() {
            std::os::unix::fs::symlink("../run", &var_run).map_err(io(format!("linking {}", var_run.display())))?;
        }
        Ok(())
    }

    /// What the node's CNI plugins see: its own /run and /var/lib/cni, and the host's
    /// /run/netns and lab state under that /run.
    pub fn plugin_view(&self) -> Vec<Bind> {
        let own = PLUGIN_VIEW.iter().map(|p| Bind {
            source: self.root.join(&p[1..]),
            target: PathBuf::from(p),
            read_only: false,
        });
        let host = HOST_UNDER_RUN.iter().map(|p| Bind {
            source: PathBuf::from(p),
            target: PathBuf::from(p),
            read_only: false,
        });
        own.chain(host).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_live_under_the_node_root_except_the_kernel_s() {
        let fs = NodeFs {
            root: "/r/nodes/n1/root".into(),
        };
        assert_eq!(
            fs.path("/opt/cni/bin").unwrap(),
            Path::new("/r/nodes/n1/root/opt/cni/bin")
        );
        assert_eq!(fs.path("/run/./weft/").unwrap(), Path::new("/r/nodes/n1/root/run/weft"));
        assert_eq!(fs.path("/").unwrap(), Path::new("/r/nodes/n1/root"));
        assert_eq!(fs.path("/lib/modules").unwrap(), Path::new("/lib/modules"));
        assert_eq!(fs.path("/run/netns").unwrap(), Path::new("/run/netns"));
        assert!(fs.path("run").is_err());
        assert!(fs.path("/var/../etc").is_err());
        assert_eq!(
            fs.plugin_path("/run/weft/node.json").unwrap(),
            Path::new("/r/nodes/n1/root/run/weft/node.json")
        );
        let lab = "/run/weft/labs/l/nodes/n1/node.json";
        assert_eq!(fs.plugin_path(lab).unwrap(), Path::new(lab));
        assert_eq!(fs.plugin_path("/etc/weft/x").unwrap(), Path::new("/etc/weft/x"));
        let view = fs.plugin_view();
        assert_eq!(view[0].source, Path::new("/r/nodes/n1/root/run"));
        assert_eq!(view.last().unwrap().target, Path::new("/run/weft/labs"));
    }
}
