//! A pod's volumes. hostPath volumes are the node's own directories (`NodeFs`); the others are written once,
//! when the pod starts, under the pod's dir (`volumes/NAME`): emptyDir, configMap, secret, downwardAPI and
//! projected (serviceAccountToken, configMap, secret, downwardAPI sources). Each container's volumeMounts
//! become binds in its mount namespace; configMap, secret, downwardAPI and projected ones are read-only, as
//! kubelet mounts them. Unlike kubelet, the lab does not refresh them when their sources change; only
//! ServiceAccount tokens are re-issued before they expire (`super::tokens`).

use super::env::{self, Facts};
use crate::node_fs::NodeFs;
use crate::sandbox::Bind;
use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, KeyToPath, Pod, Volume};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use weft_model::k8s_openapi;

/// Where a pod's own volumes are, in its dir.
pub const DIR: &str = "volumes";

/// Issues a ServiceAccount token for the pod: audience (None: the API's) and lifetime in seconds.
pub type Issue<'a> = dyn Fn(Option<&str>, Option<i64>) -> Result<String, String> + 'a;

/// Makes every volume of the pod: hostPath directories per their `type`, the others' files.
pub fn prepare(facts: &Facts, fs: &NodeFs, pod_dir: &Path, issue: &Issue) -> Result<(), String> {
    let ns = facts.pod.metadata.namespace.clone().unwrap_or_default();
    for volume in facts.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(host) = &volume.host_path {
            host_path(fs, host)?;
            continue;
        }
        let dir = pod_dir.join(DIR).join(&volume.name);
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if let Some(cm) = &volume.config_map {
            let data = env::config_map(facts.snap, &ns, &cm.name, cm.optional)?;
            add_items(&mut files, data, cm.items.as_deref(), "configmap", &cm.name)?;
        } else if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let data = env::secret(facts.snap, &ns, &name, s.optional)?;
            add_items(&mut files, data, s.items.as_deref(), "secret", &name)?;
        } else if let Some(d) = &volume.downward_api {
            for item in d.items.iter().flatten() {
                files.insert(item.path.clone(), downward(facts, item)?.into_bytes());
            }
        } else if let Some(p) = &volume.projected {
            for source in p.sources.iter().flatten() {
                if let Some(t) = &source.service_account_token {
                    let token = issue(t.audience.as_deref(), t.expiration_seconds)?;
                    files.insert(t.path.clone(), token.into_bytes());
                }
                if let Some(cm) = &source.config_map {
                    let data = env::config_map(facts.snap, &ns, &cm.name, cm.optional)?;
                    add_items(&mut files, data, cm.items.as_deref(), "configmap", &cm.name)?;
                }
                if let Some(s) = &source.secret {
                    let data = env::secret(facts.snap, &ns, &s.name, s.optional)?;
                    add_items(&mut files, data, s.items.as_deref(), "secret", &s.name)?;
                }
                if let Some(d) = &source.downward_api {
                    for item in d.items.iter().flatten() {
                        files.insert(item.path.clone(), downward(facts, item)?.into_bytes());
                    }
                }
            }
        } else if volume.empty_dir.is_none() {
            return Err(format!("volume {}: its type is not supported by the lab", volume.name));
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for (path, bytes) in files {
            let file = dir.join(relative(&path)?);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::write(&file, bytes).map_err(|e| format!("writing {}: {e}", file.display()))?;
        }
    }
    Ok(())
}

/// The binds of the container's volumeMounts, in the order given.
pub fn binds(pod: &Pod, c: &Container, fs: &NodeFs, pod_dir: &Path) -> Result<Vec<Bind>, String> {
    let volumes: &[Volume] = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    let mut out = Vec::new();
    for mount in c.volume_mounts.iter().flatten() {
        let volume = (volumes.iter().find(|v| v.name == mount.name))
            .ok_or_else(|| format!("volumeMount {}: no volume of that name", mount.name))?;
        let (mut source, read_only) = match &volume.host_path {
            Some(host) => (fs.path(&host.path).map_err(|e| e.to_string())?, false),
            None => {
                let fixed = volume.config_map.is_some()
                    || volume.secret.is_some()
                    || volume.downward_api.is_some()
                    || volume.projected.is_some();
                (pod_dir.join(DIR).join(&volume.name), fixed)
            }
        };
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(relative(sub)?);
            if !source.exists() {
                std::fs::create_dir_all(&source).map_err(|e| format!("creating {}: {e}", source.display()))?;
            }
        }
        out.push(Bind {
            source,
            target: PathBuf::from(&mount.mount_path),
            read_only: read_only || mount.read_only == Some(true),
        });
    }
    Ok(out)
}

/// Whether one of the container's mounts is at `path` (then the lab mounts nothing of its own there).
pub fn mounts_at(c: &Container, path: &str) -> bool {
    c.volume_mounts
        .iter()
        .flatten()
        .any(|m| Path::new(&m.mount_path) == Path::new(path))
}

/// A hostPath on the node, checked or made as its `type` says (kubelet's checks). Unset, a missing path is made
/// a directory, as the container runtime makes a missing bind source.
fn host_path(fs: &NodeFs, host: &HostPathVolumeSource) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let path = fs.path(&host.path).map_err(|e| e.to_string())?;
    let kind = host.type_.as_deref().unwrap_or_default();
    let failed = |what: &str| Err(format!("hostPath type check failed: {} is not {what}", host.path));
    let is = |test: fn(&std::fs::FileType) -> bool| std::fs::metadata(&path).is_ok_and(|m| test(&m.file_type()));
    match kind {
        "" | "DirectoryOrCreate" if !path.exists() => {
            std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))
        }
        "FileOrCreate" if !path.exists() => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::File::create(&path)
                .map(drop)
                .map_err(|e| format!("creating {}: {e}", path.display()))
        }
        "Directory" | "DirectoryOrCreate" if !path.is_dir() => failed("a directory"),
        "File" | "FileOrCreate" if !path.is_file() => failed("a file"),
        "Socket" if !is(FileTypeExt::is_socket) => failed("a socket file"),
        "CharDevice" if !is(FileTypeExt::is_char_device) => failed("a character device"),
        "BlockDevice" if !is(FileTypeExt::is_block_device) => failed("a block device"),
        "" | "DirectoryOrCreate" | "Directory" | "FileOrCreate" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {
            Ok(())
        }
        other => Err(format!("hostPath {}: unknown type {other:?}", host.path)),
    }
}

fn add_items(
    files: &mut BTreeMap<String, Vec<u8>>,
    data: Option<BTreeMap<String, String>>,
    items: Option<&[KeyToPath]>,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    let Some(data) = data else { return Ok(()) };
    match items {
        None => files.extend(data.into_iter().map(|(k, v)| (k, v.into_bytes()))),
        Some(items) => {
            for item in items {
                let value = (data.get(&item.key))
                    .ok_or_else(|| format!("couldn't find key {} in {kind} \"{name}\"", item.key))?;
                files.insert(item.path.clone(), value.clone().into_bytes());
            }
        }
    }
    Ok(())
}

fn downward(facts: &Facts, item: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile) -> Result<String, String> {
    let Some(f) = &item.field_ref else {
        // resourceFieldRef: the lab sets no resources.
        return Ok(String::new());
    };
    env::field(facts, &f.field_path).ok_or_else(|| format!("unsupported fieldPath {}", f.field_path))
}

/// A path inside a volume: relative, without `..`.
pub fn relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{path:?}: must be a relative path without '..'"));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_made_or_checked_as_their_type_says() {
        let root = std::env::temp_dir().join(format!("weft-hostpath-{}", crate::store::new_uid()));
        let fs = NodeFs::at(root.clone());
        let check = |path: &str, kind: Option<&str>| {
            let source = HostPathVolumeSource {
                path: path.into(),
                type_: kind.map(Into::into),
            };
            host_path(&fs, &source)
        };
        // Unset and DirectoryOrCreate make a missing directory (parents too); FileOrCreate an empty file.
        check("/unset/dir", None).unwrap();
        check("/opt/cni/bin", Some("DirectoryOrCreate")).unwrap();
        check("/var/lib/x/file", Some("FileOrCreate")).unwrap();
        assert!(root.join("unset/dir").is_dir() && root.join("opt/cni/bin").is_dir());
        assert_eq!(std::fs::read(root.join("var/lib/x/file")).unwrap(), b"");
        // The others only check, and fail the pod's start when the path is missing or of another kind.
        check("/opt/cni/bin", Some("Directory")).unwrap();
        check("/var/lib/x/file", Some("File")).unwrap();
        check("/dev/null", Some("CharDevice")).unwrap();
        let failed = |path, kind| check(path, Some(kind)).unwrap_err();
        assert_eq!(
            failed("/missing", "Directory"),
            "hostPath type check failed: /missing is not a directory"
        );
        assert!(failed("/var/lib/x/file", "DirectoryOrCreate").ends_with("is not a directory"));
        assert!(failed("/opt/cni/bin", "FileOrCreate").ends_with("is not a file"));
        assert!(failed("/run/missing.sock", "Socket").ends_with("is not a socket file"));
        assert!(failed("/dev/null", "BlockDevice").ends_with("is not a block device"));
        assert!(failed("/opt", "Pipe").contains("unknown type"));
        assert!(!root.join("missing").exists() && !root.join("run/missing.sock").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
