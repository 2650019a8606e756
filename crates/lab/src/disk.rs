//! The store on disk: a redb file holding every object as its own record (the object's JSON as the API writes
//! it, under `kind/namespace/name`) and the revision. Each commit is one durable write transaction, so what a
//! commit returned for survives a SIGKILL.

use crate::error::{Error, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weft_model::{Key, Object, Snapshot};

/// `kind/namespace/name` (namespace empty for cluster-scoped objects) → the object's JSON.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// `revision` → the store's revision.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What the pages redb caches may take: the store is read from memory, so the cache only serves the commits, and
/// 4 MiB holds every branch page of a store of 10,000s of objects (a 35 MB file has under a hundred); the leaves a
/// commit rewrites come from the kernel's page cache. 16 MiB cost the control plane 15 MB more at 10,000 Services.
const CACHE_BYTES: usize = 4 << 20;

/// How long `open` waits for another process to let go of the file.
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub struct Disk {
    db: Database,
    path: PathBuf,
}

/// The store as it is on disk.
pub struct Loaded {
    pub snap: Snapshot,
}

impl Disk {
    /// Opens the file, creating an empty store when there is none. A supervisor SIGKILLed just before holds
    /// the file's lock until the kernel has torn it down: that is waited for (up to `LOCK_WAIT`).
    pub fn open(path: &Path) -> Result<Disk> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
                Ok(db) => {
                    return Ok(Disk {
                        db,
                        path: path.to_path_buf(),
                    });
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(failed(path, e.into())),
            }
        }
    }

    /// Every object, the revision and the change log.
    pub fn load(&self) -> Result<Loaded> {
        self.read().map_err(|e| match e {
            Read::Db(e) => failed(&self.path, e),
            Read::Object(key, msg) => Error::Invalid(format!("{}: object {key}: {msg}", self.path.display())),
        })
    }

    fn read(&self) -> Result<Loaded, Read> {
        let tx = self.db.begin_read()?;
        let revision = match tx.open_table(META) {
            Ok(meta) => meta.get("revision")?.map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Loaded::empty()),
            Err(e) => return Err(Read::Db(e.into())),
        };
        let mut objects = Vec::new();
        for entry in tx.open_table(OBJECTS)?.iter()? {
            let (key, json) = entry?;
            let decoded = serde_json::from_slice(json.value())
                .map_err(|e| e.to_string())
                .and_then(weft_model::manifest::from_value);
            objects.push(decoded.map_err(|msg| Read::Object(key.value().to_string(), msg))?);
        }
        Ok(Loaded {
            snap: Snapshot::new(revision, objects),
        })
    }

    /// Writes, in one durable transaction, the objects under `keys` as `snap` has them (removing those it does
    /// not have) and `snap`'s revision.
    pub fn commit<'a>(&self, snap: &Snapshot, keys: impl Iterator<Item = &'a Key>) -> Result<()> {
        self.write(snap, keys).map_err(|e| failed(&self.path, e))
    }

    fn write<'a>(&self, snap: &Snapshot, keys: impl Iterator<Item = &'a Key>) -> Result<(), redb::Error> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut objects = tx.open_table(OBJECTS)?;
            for key in keys {
                let name = record_name(key);
                match snap.get(key) {
                    Some(object) => {
                        let json = to_json(object)?;
                        objects.insert(name.as_str(), json.as_slice())?;
                    }
                    None => {
                        objects.remove(name.as_str())?;
                    }
                }
            }
            tx.open_table(META)?.insert("revision", snap.revision)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Loaded {
    fn empty() -> Loaded {
        Loaded {
            snap: Snapshot::default(),
        }
    }
}

/// Why reading the file failed.
enum Read {
    Db(redb::Error),
    Object(String, String),
}

impl From<redb::TransactionError> for Read {
    fn from(e: redb::TransactionError) -> Read {
        Read::Db(e.into())
    }
}

impl From<redb::TableError> for Read {
    fn from(e: redb::TableError) -> Read {
        Read::Db(e.into())
    }
}

impl From<redb::StorageError> for Read {
    fn from(e: redb::StorageError) -> Read {
        Read::Db(e.into())
    }
}

/// The record's name: `kind/namespace/name`, the namespace empty for cluster-scoped objects (names hold no '/').
fn record_name(key: &Key) -> String {
    format!(
        "{}/{}/{}",
        key.kind,
        key.namespace.as_deref().unwrap_or_default(),
        key.name
    )
}

fn to_json(object: &Object) -> Result<Vec<u8>, redb::Error> {
    serde_json::to_vec(object).map_err(|e| redb::Error::Io(std::io::Error::other(e)))
}

fn failed(path: &Path, source: redb::Error) -> Error {
    Error::Store {
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}
