//! Kubeconfig files that point kubectl at a lab: a standalone one, and the lab's entries merged into (and later
//! removed from) the user's own file the way kind does, keeping everything else in it.
//!
//! A lab's cluster, user and context share one name (e.g. `weft-LAB`). The user's file is read-modified-written
//! under an flock and replaced by rename, so two labs coming up at once keep both their entries and kubectl never
//! reads half a file. Fields are kept, but not comments or key order (kubectl's own writes drop them too).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, fchown};
use serde_json::{Map, Value, json};

use crate::atomic_write;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a kubeconfig: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("writing YAML: {0}")]
    Serialize(#[from] serde_saphyr::SerializeError),
    #[error("neither $KUBECONFIG nor $HOME is set")]
    NoHome,
}

/// Where the lab's credentials go for a bare `kubectl`, as kind decides it: the first existing file named in
/// `$KUBECONFIG` (else its first entry), else `$HOME/.kube/config`.
pub fn default_path() -> Result<PathBuf, KubeconfigError> {
    path_from(std::env::var_os("KUBECONFIG"), std::env::var_os("HOME"))
}

fn path_from(kubeconfig: Option<OsString>, home: Option<OsString>) -> Result<PathBuf, KubeconfigError> {
    let listed: Vec<PathBuf> = kubeconfig
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    if let Some(first) = listed.first() {
        return Ok(listed.iter().find(|p| p.exists()).unwrap_or(first).clone());
    }
    match home {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".kube").join("config")),
        _ => Err(KubeconfigError::NoHome),
    }
}

/// A kubeconfig holding only the lab: cluster, user and context all called `name`, current.
pub fn standalone(
    name: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<String, KubeconfigError> {
    let mut config = Map::new();
    upsert_lab(&mut config, Path::new("-"), name, server, ca_pem, cert_pem, key_pem)?;
    to_yaml(&config)
}

/// Adds or replaces the cluster, user and context `name` in the kubeconfig at `path` (created mode 0600 with its
/// directory if absent) and makes `name` the current context. Every other entry and field is kept.
pub fn merge_into(
    path: &Path,
    name: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), KubeconfigError> {
    let path = resolve(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dirs_owned_like_parent(dir).map_err(|source| KubeconfigError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut file = Locked::open(&path, true)?.ok_or_else(|| KubeconfigError::Io {
        path: path.clone(),
        source: io::ErrorKind::NotFound.into(),
    })?;
    let mut config = file.config()?;
    upsert_lab(&mut config, &path, name, server, ca_pem, cert_pem, key_pem)?;
    file.replace(&config)
}

/// Removes the cluster, user and context `name` from the kubeconfig at `path`, and unsets the current context
/// (to "", as kind does) if it was `name`. A missing file, or one without those entries, is left alone.
pub fn remove_from(path: &Path, name: &str) -> Result<(), KubeconfigError> {
    let path = resolve(path)?;
    let Some(mut file) = Locked::open(&path, false)? else {
        return Ok(());
    };
    let mut config = file.config()?;
    let mut changed = false;
    for list in ["clusters", "users", "contexts"] {
        if let Some(Value::Array(items)) = config.get_mut(list) {
            let before = items.len();
            items.retain(|item| entry_name(item) != Some(name));
            changed |= items.len() != before;
        }
    }
    if config.get("current-context").and_then(Value::as_str) == Some(name) {
        config.insert("current-context".into(), Value::String(String::new()));
        changed = true;
    }
    if changed { file.replace(&config) } else { Ok(()) }
}

/// Writes the lab's three entries into `config`. The cluster and user are replaced whole (a stale
/// `certificate-authority` file path beside the new `-data` would make kubectl refuse the file); the context keeps
/// fields the user set on it, such as a default namespace.
fn upsert_lab(
    config: &mut Map<String, Value>,
    path: &Path,
    name: &str,
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), KubeconfigError> {
    config.entry("apiVersion").or_insert_with(|| json!("v1"));
    config.entry("kind").or_insert_with(|| json!("Config"));
    let cluster = json!({"server": server, "certificate-authority-data": BASE64.encode(ca_pem)});
    let user = json!({"client-certificate-data": BASE64.encode(cert_pem), "client-key-data": BASE64.encode(key_pem)});
    *entry(config, path, "clusters", name)? = json!({"name": name, "cluster": cluster});
    *entry(config, path, "users", name)? = json!({"name": name, "user": user});
    let context = entry(config, path, "contexts", name)?;
    let mut fields = match context.get_mut("context").map(Value::take) {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    fields.insert("cluster".into(), json!(name));
    fields.insert("user".into(), json!(name));
    *context = json!({"name": name, "context": fields});
    config.insert("current-context".into(), json!(name));
    Ok(())
}

/// The entry called `name` in the list `list` of `config`, appended (as null) if there is none.
fn entry<'a>(
    config: &'a mut Map<String, Value>,
    path: &Path,
    list: &str,
    name: &str,
) -> Result<&'a mut Value, KubeconfigError> {
    let slot = config.entry(list).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    let Value::Array(items) = slot else {
        return Err(KubeconfigError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{list} is not a list"),
        });
    };
    let index = match items.iter().position(|item| entry_name(item) == Some(name)) {
        Some(index) => index,
        None => {
            items.push(Value::Null);
            items.len() - 1
        }
    };
    Ok(&mut items[index])
}

fn entry_name(item: &Value) -> Option<&str> {
    item.get("name").and_then(Value::as_str)
}

fn to_yaml(config: &Map<String, Value>) -> Result<String, KubeconfigError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Plain scalars: base64 data in a folded block would come back with a newline appended.
    options.prefer_block_scalars = false;
    Ok(serde_saphyr::to_string_with_options(config, options)?)
}

/// The file itself when `path` is a symlink (a dotfiles-managed `~/.kube/config`), so the rename replaces the
/// target rather than the link.
fn resolve(path: &Path) -> Result<PathBuf, KubeconfigError> {
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(source) => Err(KubeconfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Opens `path` for writing, creating it (mode 0600, owned like its directory) if absent.
fn open_or_create(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => {
            if let Some(dir) = path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                let meta = fs::metadata(dir)?;
                own_like(&file, &meta)?;
            }
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new().read(true).write(true).open(path),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing ancestors, each owned like the directory it is made in: a lab running as root
/// that writes a user's `~/.kube/config` must leave `~/.kube` and the file the user's, or their kubectl breaks.
fn create_dirs_owned_like_parent(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dirs_owned_like_parent(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => own_like(&File::open(dir)?, &fs::metadata(parent)?),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Gives `file` the owner of `like`, when running as root (anyone else can only create files of their own).
fn own_like(file: &File, like: &fs::Metadata) -> io::Result<()> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let owner = (Uid::from_raw(like.uid()), Gid::from_raw(like.gid()));
    if owner != (Uid::effective(), Gid::effective()) {
        fchown(file, Some(owner.0), Some(owner.1))?;
    }
    Ok(())
}

/// A kubeconfig held under an exclusive flock for a read-modify-write.
struct Locked {
    path: PathBuf,
    file: Flock<File>,
}

impl Locked {
    /// Opens and locks `path` (creating it, mode 0600, if `create`); `None` if it does not exist and `!create`.
    /// A writer replaces the file by rename, so a lock won on a file that is no longer at `path` is retried.
    fn open(path: &Path, create: bool) -> Result<Option<Locked>, KubeconfigError> {
        let io_err = |source| KubeconfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        loop {
            let opened = if create { open_or_create(path) } else { File::open(path) };
            let file = match opened {
                Ok(file) => file,
                // Removed between our looking and opening: look again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(e)),
            };
            let file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| io_err(errno.into()))?;
            let held = file.metadata().map_err(io_err)?;
            match fs::metadata(path) {
                Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
                    return Ok(Some(Locked {
                        path: path.to_path_buf(),
                        file,
                    }));
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if create {
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// The file's top-level mapping; empty for an empty file.
    fn config(&mut self) -> Result<Map<String, Value>, KubeconfigError> {
        let mut text = String::new();
        (&*self.file)
            .read_to_string(&mut text)
            .map_err(|source| KubeconfigError::Io {
                path: self.path.clone(),
                source,
            })?;
        let invalid = |reason: String| KubeconfigError::Invalid {
            path: self.path.clone(),
            reason,
        };
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_saphyr::from_str::<Value>(&text).map_err(|e| invalid(e.to_string()))? {
            Value::Object(map) => Ok(map),
            Value::Null => Ok(Map::new()),
            _ => Err(invalid("the document is not a mapping".into())),
        }
    }

    /// Replaces the file with `config`, keeping its mode and owner (a root lab writing a user's kubeconfig must
    /// not take it over). The lock is released when `self` drops, after the rename.
    fn replace(self, config: &Map<String, Value>) -> Result<(), KubeconfigError> {
        let io_err = |source| KubeconfigError::Io {
            path: self.path.clone(),
            source,
        };
        let meta = self.file.metadata().map_err(io_err)?;
        let owner = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
        let owner = (owner != (Uid::effective(), Gid::effective())).then_some(owner);
        atomic_write::write(&self.path, to_yaml(config)?.as_bytes(), meta.mode() & 0o777, owner).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_follows_kubeconfig_then_home() {
        let home = Some(OsString::from("/home/u"));
        assert_eq!(
            path_from(None, home.clone()).unwrap(),
            Path::new("/home/u/.kube/config")
        );
        assert_eq!(
            path_from(Some("".into()), home.clone()).unwrap(),
            Path::new("/home/u/.kube/config")
        );
        // None of the listed files exists: the first entry, skipping empty ones.
        let listed = Some(OsString::from(":/nonexistent/a:/nonexistent/b"));
        assert_eq!(path_from(listed, home.clone()).unwrap(), Path::new("/nonexistent/a"));
        // The first that exists wins, as kind merges into it.
        let listed = Some(OsString::from("/nonexistent/a:/"));
        assert_eq!(path_from(listed, home).unwrap(), Path::new("/"));
        assert!(matches!(path_from(None, None), Err(KubeconfigError::NoHome)));
    }
}
