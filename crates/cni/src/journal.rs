//! Per-attachment records of what weft-cni made on the node, written before the thing is made:
//! `<stateDir>/<network>/<kind>/<containerID>_<ifname>`, one line per object. DEL and GC read them back, so
//! they work without prevResult, after the pod's namespace is gone, and after a crash at any point.

use crate::spec::config::Attachment;
use crate::spec::{CniError, Result};
use crate::state;
use std::path::{Path, PathBuf};

pub struct Journal {
    path: PathBuf,
}

fn kind_dir(state_dir: &Path, network: &str, kind: &str) -> Result<PathBuf> {
    if network.is_empty() || network.starts_with('.') || network.contains('/') {
        return Err(CniError::config(format!(
            "network name {network:?} cannot name a directory"
        )));
    }
    Ok(state_dir.join(network).join(kind))
}

impl Journal {
    pub fn new(state_dir: &Path, network: &str, kind: &str, container_id: &str, ifname: &str) -> Result<Journal> {
        Ok(Journal {
            path: kind_dir(state_dir, network, kind)?.join(format!("{container_id}_{ifname}")),
        })
    }

    pub fn write(&self, lines: &[String]) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            state::ensure_dir(dir)?;
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        state::write_atomic(&self.path, text.as_bytes())
    }

    /// The recorded lines; none when there is no journal.
    pub fn read(&self) -> Result<Vec<String>> {
        let Some(data) = state::read(&self.path)? else {
            return Ok(Vec::new());
        };
        Ok(String::from_utf8_lossy(&data)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    pub fn remove(&self) -> Result<()> {
        state::remove(&self.path)
    }

    /// Every journal of `kind` in the network (temporaries of a write in progress left out).
    pub fn all(state_dir: &Path, network: &str, kind: &str) -> Result<Vec<Journal>> {
        let dir = kind_dir(state_dir, network, kind)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| Journal { path: e.path() })
            .collect())
    }

    /// The lock on the `inet weft-cni` table of this journal's state directory, held by every transaction on
    /// it that journals say something about (see [`crate::firewall::restore`]).
    pub fn table_lock(&self) -> Result<state::Lock> {
        let state_dir = self.path.ancestors().nth(3).unwrap_or(Path::new("."));
        state::ensure_dir(state_dir)?;
        state::Lock::acquire(&state_dir.join(crate::firewall::TABLE_LOCK))
    }

    /// Journals of `kind` in the network that belong to no attachment in `valid` (temporaries included).
    pub fn stale(state_dir: &Path, network: &str, kind: &str, valid: &[Attachment]) -> Result<Vec<Journal>> {
        let dir = kind_dir(state_dir, network, kind)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owned = !name.starts_with('.')
                && name
                    .rsplit_once('_')
                    .is_some_and(|(cid, ifname)| valid.iter().any(|a| a.container_id == cid && a.ifname == ifname));
            if !owned {
                out.push(Journal { path: dir.join(name) });
            }
        }
        Ok(out)
    }
}

/// Deletes the links a journal names (in the calling thread's namespace), then the journal: once the kernel
/// has unlisted them (see [`crate::detach`]), so a crash before that leaves the journal for GC.
pub fn remove_links(journal: &Journal) -> Result<()> {
    let names = journal.read()?;
    if !names.is_empty() {
        let mut host = weft_netlink::Handle::new()?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        crate::detach::delete_links_named(&mut host, &names)?;
    }
    journal.remove()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journals_round_trip_and_stale_ones_are_found() {
        let dir = std::env::temp_dir().join(format!("weft-journal-{}", std::process::id()));
        let j = Journal::new(&dir, "net", "portmap", "c1", "eth0").unwrap();
        assert!(j.read().unwrap().is_empty());
        let lines = vec!["hostports4\ttcp . 80 : 10.0.0.2 . 8080".to_string()];
        j.write(&lines).unwrap();
        assert_eq!(j.read().unwrap(), lines);
        let keep = Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        assert!(
            Journal::stale(&dir, "net", "portmap", std::slice::from_ref(&keep))
                .unwrap()
                .is_empty()
        );
        assert_eq!(Journal::stale(&dir, "net", "portmap", &[]).unwrap().len(), 1);
        j.remove().unwrap();
        assert!(Journal::new(&dir, "../x", "portmap", "c", "e").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
