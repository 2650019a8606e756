//! host-local's on-disk store, one directory per network, `<dataDir>/<network>/`:
//!
//! - `<ip>`: a reservation holding `containerID\nifname` (the reference plugin's layout, which it can read
//!   back). Created exclusively, so two invocations can never hold the same address even without the
//!   lock: the reservation is the commitment, and the only truth about who owns an address.
//! - `attachments/<containerID>:<ifname>`: the attachment's index, `containerID\nifname\n` then one address
//!   per line, so ADD retries, DEL and CHECK are O(1). ':' is in neither a container ID nor an interface
//!   name, so names never collide. The index is written *before* each reservation (an intent): every
//!   reservation an ADD makes is listed, so DEL after a crash at any instant still finds it. A listed
//!   address counts only while its reservation names this attachment.
//! - `last_reserved_ip.<set>`: where the next search of range set `<set>` starts (round-robin).
//! - `lock`: flock held by every operation, so allocation is fair and GC sees no ADD half-way.
//! - `.*`: temporaries of [`crate::state`]; only a killed process leaves them, walks skip them, GC removes them.

use crate::spec::config::Attachment;
use crate::spec::env::validate_ifname;
use crate::spec::{CniError, Result};
use crate::state::{self, Lock};
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const INDEX_DIR: &str = "attachments";
const LAST_RESERVED: &str = "last_reserved_ip.";

/// Who holds a reservation: one attachment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    container_id: String,
    ifname: String,
}

impl Owner {
    /// Both parts become a file name, so they follow the spec's rules (code 4 otherwise).
    pub fn new(container_id: &str, ifname: &str) -> Result<Owner> {
        let id_ok = container_id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !id_ok {
            return Err(CniError::env(format!(
                "container ID {container_id:?} is invalid: use letters, digits, '_', '.', '-', starting with a letter or digit"
            )));
        }
        validate_ifname(ifname)?;
        Ok(Owner {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        })
    }

    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// From a file's first two lines; None when they do not name a valid attachment.
    fn parse<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Option<Owner> {
        let id = lines.next()?.trim();
        let ifname = lines.next()?.trim();
        Owner::new(id, ifname).ok()
    }

    fn record(&self) -> String {
        format!("{}\n{}", self.container_id, self.ifname)
    }

    fn index_name(&self) -> String {
        format!("{}:{}", self.container_id, self.ifname)
    }

    fn is_in(&self, valid: &[Attachment]) -> bool {
        valid
            .iter()
            .any(|a| a.container_id == self.container_id && a.ifname == self.ifname)
    }
}

/// `<dataDir>/<network>`, refusing names that are not one plain directory name (code 7).
pub fn network_dir(data_dir: &Path, network: &str) -> Result<PathBuf> {
    if network.is_empty() || network.starts_with('.') || network.contains(['/', '\0']) || network.contains("..") {
        return Err(CniError::config(format!(
            "network name {network:?} cannot name a directory: it must be non-empty, not start with '.' and hold no '/' or \"..\""
        )));
    }
    Ok(data_dir.join(network))
}

/// One network's store, locked while this value lives.
pub struct Store {
    dir: PathBuf,
    _lock: Lock,
}

impl Store {
    /// Opens (creating) and locks the network's directory; for ADD.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        let dir = network_dir(data_dir, network)?;
        state::ensure_dir(&dir.join(INDEX_DIR))?;
        let lock = Lock::acquire(&dir.join("lock"))?;
        Ok(Store { dir, _lock: lock })
    }

    /// Opens and locks the directory if the network ever had one; DEL, CHECK, GC and STATUS create nothing.
    pub fn open_existing(data_dir: &Path, network: &str) -> Result<Option<Store>> {
        let dir = network_dir(data_dir, network)?;
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Self::open(data_dir, network).map(Some),
            Ok(_) => Err(CniError::io(
                format!("ipam store {} is not a directory", dir.display()),
                "file exists",
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state::io_err("cannot open", &dir, e)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn index_path(&self, owner: &Owner) -> PathBuf {
        self.dir.join(INDEX_DIR).join(owner.index_name())
    }

    /// Whether a reservation file exists for `ip` (a cheap probe; [`Store::reserve`] decides).
    pub fn is_reserved(&self, ip: IpAddr) -> Result<bool> {
        let path = self.ip_path(ip);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(state::io_err("cannot probe", &path, e)),
        }
    }

    /// Reserves `ip` for `owner`; Ok(false) when a reservation exists already (whoever holds it).
    pub fn reserve(&self, ip: IpAddr, owner: &Owner) -> Result<bool> {
        state::create_exclusive(&self.ip_path(ip), owner.record().as_bytes())
    }

    /// Who holds `ip`; None when it is free or its file names no valid attachment.
    pub fn owner(&self, ip: IpAddr) -> Result<Option<Owner>> {
        Ok(state::read(&self.ip_path(ip))?.and_then(|data| Owner::parse(&mut String::from_utf8_lossy(&data).lines())))
    }

    pub fn release(&self, ip: IpAddr) -> Result<()> {
        state::remove(&self.ip_path(ip))
    }

    /// Reads an index file: its owner and listed addresses; None when absent or not an index.
    fn read_index(path: &Path) -> Result<Option<(Owner, Vec<IpAddr>)>> {
        let Some(data) = state::read(path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&data);
        let mut lines = text.lines();
        let Some(owner) = Owner::parse(&mut lines) else {
            return Ok(None);
        };
        let ips = lines.filter_map(|l| l.trim().parse().ok()).collect();
        Ok(Some((owner, ips)))
    }

    /// What the owner's index lists (possibly intents that never became reservations); None without index.
    pub fn listed(&self, owner: &Owner) -> Result<Option<Vec<IpAddr>>> {
        Ok(Self::read_index(&self.index_path(owner))?
            .filter(|(o, _)| o == owner)
            .map(|(_, ips)| ips))
    }

    /// The owner's addresses: listed in its index and reserved for it.
    pub fn held(&self, owner: &Owner) -> Result<Vec<IpAddr>> {
        self.held_of(owner, &self.listed(owner)?.unwrap_or_default())
    }

    /// Of `listed`, what is reserved for `owner`, without duplicates.
    pub fn held_of(&self, owner: &Owner, listed: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let mut held = Vec::new();
        for ip in listed {
            if !held.contains(ip) && self.owner(*ip)?.as_ref() == Some(owner) {
                held.push(*ip);
            }
        }
        Ok(held)
    }

    pub fn write_index(&self, owner: &Owner, ips: &[IpAddr]) -> Result<()> {
        let mut text = owner.record();
        text.push('\n');
        for ip in ips {
            text.push_str(&format!("{ip}\n"));
        }
        state::write_atomic(&self.index_path(owner), text.as_bytes())
    }

    pub fn remove_index(&self, owner: &Owner) -> Result<()> {
        state::remove(&self.index_path(owner))
    }

    /// Releases what the owner's index lists and still holds, then the index: DEL.
    pub fn release_attachment(&self, owner: &Owner) -> Result<()> {
        for ip in self.held(owner)? {
            self.release(ip)?;
        }
        self.remove_index(owner)
    }

    /// Where range set `set`'s search stopped; None when never written or unreadable.
    pub fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>> {
        Ok(state::read(&self.dir.join(format!("{LAST_RESERVED}{set}")))?
            .and_then(|d| String::from_utf8_lossy(&d).trim().parse().ok()))
    }

    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<()> {
        state::write_atomic(
            &self.dir.join(format!("{LAST_RESERVED}{set}")),
            ip.to_string().as_bytes(),
        )
    }

    /// Every reserved address: a directory walk, for STATUS, GC and error messages only.
    pub fn reserved(&self) -> Result<Vec<IpAddr>> {
        Ok(names(&self.dir)?.iter().filter_map(|n| n.parse().ok()).collect())
    }

    /// Frees everything no attachment in `valid` owns and repairs what a killed process left:
    /// - indexes of attachments not in `valid`: their reservations released, then the index removed;
    /// - index entries whose reservation is not the owner's (an intent never carried out): dropped;
    /// - indexes that are unreadable or named for another attachment: removed (their reservations are
    ///   judged on their own below);
    /// - reservations of attachments not in `valid`, or naming no valid attachment: released;
    /// - reservations of a valid attachment that its index does not list (e.g. written by the reference
    ///   plugin, which keeps no index): adopted into the index, since the runtime says the owner lives;
    /// - temporaries ('.' names): removed.
    ///
    /// Keeps going after an error and reports the first.
    pub fn gc(&self, valid: &[Attachment]) -> Result<()> {
        let mut errors = Vec::new();
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        let index_dir = self.dir.join(INDEX_DIR);
        let mut indexed: BTreeMap<Owner, Vec<IpAddr>> = BTreeMap::new();
        for name in names(&index_dir)? {
            let path = index_dir.join(&name);
            if name.starts_with('.') {
                note(state::remove(&path));
                continue;
            }
            let (owner, listed) = match Self::read_index(&path) {
                Ok(Some((owner, listed))) if owner.index_name() == name => (owner, listed),
                Ok(_) => {
                    note(state::remove(&path));
                    continue;
                }
                Err(e) => {
                    note(Err(e));
                    continue;
                }
            };
            let outcome = (|| -> Result<()> {
                let held = self.held_of(&owner, &listed)?;
                if owner.is_in(valid) && !held.is_empty() {
                    if held != listed {
                        self.write_index(&owner, &held)?;
                    }
                    indexed.insert(owner, held);
                    return Ok(());
                }
                if !owner.is_in(valid) {
                    for ip in &held {
                        self.release(*ip)?;
                    }
                }
                state::remove(&path)
            })();
            note(outcome);
        }
        let mut adopt: BTreeMap<Owner, Vec<IpAddr>> = BTreeMap::new();
        for name in names(&self.dir)? {
            if name.starts_with('.') {
                note(state::remove(&self.dir.join(&name)));
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            match self.owner(ip) {
                Ok(Some(owner)) if owner.is_in(valid) => {
                    if !indexed.get(&owner).is_some_and(|ips| ips.contains(&ip)) {
                        adopt.entry(owner).or_default().push(ip);
                    }
                }
                Ok(_) => note(self.release(ip)),
                Err(e) => note(Err(e)),
            }
        }
        for (owner, mut ips) in adopt {
            let mut all = indexed.remove(&owner).unwrap_or_default();
            ips.sort();
            all.extend(ips);
            note(self.write_index(&owner, &all));
        }
        let count = errors.len();
        match errors.into_iter().next() {
            None => Ok(()),
            Some(first) if count == 1 => Err(first),
            Some(first) => Err(CniError {
                msg: format!("{} (and {} more GC errors)", first.msg, count - 1),
                ..first
            }),
        }
    }
}

/// Entry names of `dir` ('.' names included: callers decide).
fn names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(state::io_err("cannot list", dir, e)),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::tests::TempDir;
    use crate::spec::Code;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn owner(id: &str) -> Owner {
        Owner::new(id, "eth0").expect("valid owner")
    }

    fn valid(ids: &[&str]) -> Vec<Attachment> {
        ids.iter()
            .map(|id| Attachment {
                container_id: id.to_string(),
                ifname: "eth0".into(),
            })
            .collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut n = names(dir).expect("list");
        n.sort();
        n
    }

    #[test]
    fn network_and_attachment_names_cannot_escape_the_directory() {
        let t = TempDir::new("names");
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a..b", "a\0b"] {
            let err = Store::open(t.path(), bad).err().expect(bad);
            assert_eq!(err.code, Code::InvalidConfig, "{bad:?}");
            assert!(err.msg.contains("network name"), "{err}");
        }
        assert_eq!(
            files(t.path()),
            Vec::<String>::new(),
            "nothing created for a refused name"
        );
        for (id, ifname) in [
            ("", "eth0"),
            ("../x", "eth0"),
            (".a", "eth0"),
            ("a:b", "eth0"),
            ("c1", "a/b"),
            ("c1", ""),
        ] {
            assert_eq!(
                Owner::new(id, ifname).unwrap_err().code,
                Code::InvalidEnvironment,
                "{id:?} {ifname:?}"
            );
        }
        assert!(Owner::new("a_b.c-1", "eth_0.1").is_ok());
    }

    #[test]
    fn index_lists_only_what_the_owner_still_holds() {
        let t = TempDir::new("held");
        let s = Store::open(t.path(), "net").unwrap();
        let (a, b) = (owner("a"), owner("b"));
        s.write_index(&a, &[ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")])
            .unwrap();
        assert!(s.reserve(ip("10.0.0.2"), &a).unwrap());
        assert!(s.reserve(ip("10.0.0.3"), &b).unwrap());
        assert!(!s.reserve(ip("10.0.0.2"), &b).unwrap(), "exclusive");
        assert_eq!(s.held(&a).unwrap(), vec![ip("10.0.0.2")]);
        assert_eq!(s.owner(ip("10.0.0.3")).unwrap(), Some(b.clone()));
        s.release_attachment(&a).unwrap();
        assert_eq!(s.owner(ip("10.0.0.2")).unwrap(), None);
        assert_eq!(s.owner(ip("10.0.0.3")).unwrap(), Some(b), "someone else's stays");
        assert_eq!(s.listed(&a).unwrap(), None);
    }

    #[test]
    fn reference_plugin_records_are_understood() {
        let t = TempDir::new("compat");
        let s = Store::open(t.path(), "net").unwrap();
        fs::write(s.dir().join("10.0.0.9"), "c1\r\neth0").unwrap();
        assert_eq!(s.owner(ip("10.0.0.9")).unwrap(), Some(owner("c1")));
        fs::write(s.dir().join("10.0.0.10"), "c1").unwrap();
        assert_eq!(s.owner(ip("10.0.0.10")).unwrap(), None, "truncated record names no one");
        fs::write(s.dir().join("last_reserved_ip.0"), "not an ip").unwrap();
        assert_eq!(s.last_reserved(0).unwrap(), None);
    }

    /// Every state a SIGKILL can leave, written directly, then GC.
    #[test]
    fn gc_repairs_what_a_killed_process_leaves() {
        let t = TempDir::new("crash");
        let s = Store::open(t.path(), "net").unwrap();
        let idx = s.dir().join(INDEX_DIR);
        // Killed inside state::create_exclusive / write_atomic: temporaries only.
        fs::write(s.dir().join(".10.0.0.7.4242.tmp"), "dead\neth0").unwrap();
        fs::write(idx.join(".dead:eth0.4242.tmp"), "dead\neth0\n10.0.0.7\n").unwrap();
        // Killed after writing the intent, before reserving: an index naming nothing held.
        s.write_index(&owner("intent"), &[ip("10.0.0.8")]).unwrap();
        // Killed after reserving, for an attachment the runtime has given up on.
        s.write_index(&owner("gone"), &[ip("10.0.0.9")]).unwrap();
        assert!(s.reserve(ip("10.0.0.9"), &owner("gone")).unwrap());
        // A reservation with no index (e.g. the reference plugin's), its owner not valid.
        assert!(s.reserve(ip("10.0.0.10"), &owner("orphan")).unwrap());
        // A reservation with no index whose owner the runtime says lives: adopted, not freed.
        assert!(s.reserve(ip("10.0.0.11"), &owner("legacy")).unwrap());
        // A live attachment whose index also lists an intent that someone else then reserved.
        s.write_index(&owner("live"), &[ip("10.0.0.12"), ip("10.0.0.13")])
            .unwrap();
        assert!(s.reserve(ip("10.0.0.12"), &owner("live")).unwrap());
        assert!(s.reserve(ip("10.0.0.13"), &owner("thief")).unwrap());
        // Garbage: a record naming no one, an index under a name not its owner's, an unreadable index.
        fs::write(s.dir().join("10.0.0.14"), "").unwrap();
        fs::write(idx.join("x:eth0"), "live\neth0\n10.0.0.12\n").unwrap();
        fs::write(idx.join("junk"), [0xff, 0xfe]).unwrap();

        s.gc(&valid(&["live", "legacy", "intent"])).unwrap();

        assert_eq!(
            files(s.dir()),
            vec!["10.0.0.11", "10.0.0.12", INDEX_DIR, "lock"],
            "thief's 10.0.0.13 is not valid either, so it goes too"
        );
        assert_eq!(files(&idx), vec!["legacy:eth0", "live:eth0"]);
        assert_eq!(s.listed(&owner("live")).unwrap(), Some(vec![ip("10.0.0.12")]));
        assert_eq!(s.held(&owner("legacy")).unwrap(), vec![ip("10.0.0.11")]);
        // Once adopted, DEL finds it in O(1).
        s.release_attachment(&owner("legacy")).unwrap();
        assert_eq!(s.owner(ip("10.0.0.11")).unwrap(), None);
        // A second GC has nothing left to do.
        s.gc(&valid(&["live"])).unwrap();
        assert_eq!(files(s.dir()), vec!["10.0.0.12", INDEX_DIR, "lock"]);
        assert_eq!(files(&idx), vec!["live:eth0"]);
    }

    #[test]
    fn gc_keeps_going_and_reports_errors() {
        let t = TempDir::new("gcerr");
        let s = Store::open(t.path(), "net").unwrap();
        // A directory where a reservation should be: unreadable, so an error, but the rest is still done.
        fs::create_dir(s.dir().join("10.0.0.5")).unwrap();
        assert!(s.reserve(ip("10.0.0.6"), &owner("gone")).unwrap());
        let err = s.gc(&[]).unwrap_err();
        assert_eq!(err.code, Code::Io, "{err}");
        assert!(err.msg.contains("10.0.0.5"), "{err}");
        assert_eq!(s.owner(ip("10.0.0.6")).unwrap(), None);
    }
}
