//! host-local's on-disk store, one directory per network:
//!
//! - `<ip>`: a reservation, holding `containerID\nifname`. Created exclusively, so two invocations can never
//!   hold the same address; it is the commitment.
//! - `attachments/<containerID>_<ifname>`: the attachment's addresses, one per line, so DEL and CHECK are
//!   O(1) instead of a scan. Written after the reservations.
//! - `last_reserved_ip.<set>`: where the next search starts, so ADD probes a few names instead of reading
//!   every reservation.
//! - `lock`: flock held by ADD, DEL and GC.
//!
//! A crash at any point leaves reservations without an index (or an index without reservations), which GC
//! recognises and removes; temporary files start with '.' and GC removes them too.

use crate::spec::config::Attachment;
use crate::spec::{CniError, Result};
use crate::state::{self, Lock};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub struct Store {
    dir: PathBuf,
    _lock: Lock,
}

impl Store {
    /// Opens (creating) and locks the network's directory.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        if network.is_empty() || network.starts_with('.') || network.contains('/') {
            return Err(CniError::config(format!(
                "network name {network:?} cannot name a directory"
            )));
        }
        let dir = data_dir.join(network);
        state::ensure_dir(&dir.join("attachments"))?;
        let lock = Lock::acquire(&dir.join("lock"))?;
        Ok(Store { dir, _lock: lock })
    }

    fn index_path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join("attachments").join(format!("{container_id}_{ifname}"))
    }

    fn owner_text(container_id: &str, ifname: &str) -> String {
        format!("{container_id}\n{ifname}")
    }

    /// Reserves `ip` for the attachment; Ok(false) when someone holds it.
    pub fn reserve(&self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool> {
        state::create_exclusive(
            &self.dir.join(ip.to_string()),
            Self::owner_text(container_id, ifname).as_bytes(),
        )
    }

    /// Who holds `ip`, as (containerID, ifname).
    pub fn owner(&self, ip: IpAddr) -> Result<Option<(String, String)>> {
        let Some(data) = state::read(&self.dir.join(ip.to_string()))? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&data);
        let mut lines = text.lines();
        Ok(Some((
            lines.next().unwrap_or_default().to_string(),
            lines.next().unwrap_or_default().trim().to_string(),
        )))
    }

    pub fn release(&self, ip: IpAddr) -> Result<()> {
        state::remove(&self.dir.join(ip.to_string()))
    }

    /// The attachment's addresses, if its index exists and every one is still reserved for it.
    pub fn attachment(&self, container_id: &str, ifname: &str) -> Result<Option<Vec<IpAddr>>> {
        let Some(data) = state::read(&self.index_path(container_id, ifname))? else {
            return Ok(None);
        };
        let ips: Vec<IpAddr> = String::from_utf8_lossy(&data)
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        let mine = Some((container_id.to_string(), ifname.to_string()));
        for ip in &ips {
            if self.owner(*ip)? != mine {
                return Ok(None);
            }
        }
        Ok((!ips.is_empty()).then_some(ips))
    }

    pub fn write_attachment(&self, container_id: &str, ifname: &str, ips: &[IpAddr]) -> Result<()> {
        let text: String = ips.iter().map(|ip| format!("{ip}\n")).collect();
        state::write_atomic(&self.index_path(container_id, ifname), text.as_bytes())
    }

    /// Releases the attachment's addresses (only those still its own) and its index.
    pub fn remove_attachment(&self, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.index_path(container_id, ifname);
        if let Some(data) = state::read(&path)? {
            let mine = Some((container_id.to_string(), ifname.to_string()));
            for ip in String::from_utf8_lossy(&data)
                .lines()
                .filter_map(|l| l.parse::<IpAddr>().ok())
            {
                if self.owner(ip)? == mine {
                    self.release(ip)?;
                }
            }
        }
        state::remove(&path)
    }

    pub fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>> {
        Ok(state::read(&self.dir.join(format!("last_reserved_ip.{set}")))?
            .and_then(|d| String::from_utf8_lossy(&d).trim().parse().ok()))
    }

    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<()> {
        state::write_atomic(
            &self.dir.join(format!("last_reserved_ip.{set}")),
            ip.to_string().as_bytes(),
        )
    }

    /// Every reserved address (for STATUS and GC, which may afford a directory walk).
    pub fn reserved(&self) -> Result<Vec<IpAddr>> {
        Ok(self.names(&self.dir)?.iter().filter_map(|n| n.parse().ok()).collect())
    }

    fn names(&self, dir: &Path) -> Result<Vec<String>> {
        let entries = fs::read_dir(dir).map_err(|e| state::io_err("cannot list", dir, e))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Removes reservations and indexes of attachments not in `valid`, reservations no index lists, indexes
    /// whose reservations are gone, and temporary files left by killed processes.
    pub fn gc(&self, valid: &[Attachment]) -> Result<()> {
        let is_valid = |cid: &str, ifname: &str| valid.iter().any(|a| a.container_id == cid && a.ifname == ifname);
        let index_dir = self.dir.join("attachments");
        for name in self.names(&index_dir)? {
            let path = index_dir.join(&name);
            let Some((cid, ifname)) = name.rsplit_once('_') else {
                state::remove(&path)?;
                continue;
            };
            if name.starts_with('.') || !is_valid(cid, ifname) || self.attachment(cid, ifname)?.is_none() {
                state::remove(&path)?;
            }
        }
        for name in self.names(&self.dir)? {
            if name.starts_with('.') {
                state::remove(&self.dir.join(&name))?;
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else { continue };
            let listed = match self.owner(ip)? {
                Some((cid, ifname)) => {
                    is_valid(&cid, &ifname) && self.attachment(&cid, &ifname)?.is_some_and(|ips| ips.contains(&ip))
                }
                None => false,
            };
            if !listed {
                self.release(ip)?;
            }
        }
        Ok(())
    }
}
