//! Pods whose address is in the store and whose processes wait until the node's agent has synced it (put the
//! pod under its NetworkPolicy rules). One thread per node looks at the agent's synced revision for all of them,
//! so a start thread goes on to the next pod's sandbox meanwhile: sandboxes are set up while the agent syncs,
//! and one sync of the agent releases every pod it covers.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often the agent's synced revision is read while pods wait for it.
const POLL: Duration = Duration::from_millis(5);
/// How long a pod waits for the agent before it starts anyway (with a warning).
const PATIENCE: Duration = Duration::from_secs(10);

/// The waiting pods (`T`), each with the revision the agent must have synced.
pub struct AgentWaits<T> {
    waiting: Mutex<Vec<Waiting<T>>>,
    added: Condvar,
}

/// Where the agent records the revision it has synced (`agent-revision`, beside the node settings).
type RevisionFile = PathBuf;

struct Waiting<T> {
    file: RevisionFile,
    revision: u64,
    deadline: Instant,
    item: T,
}

/// A pod let go: the agent synced its revision, or it waited `PATIENCE` (`late`).
pub struct Released<T> {
    pub item: T,
    pub late: bool,
}

impl<T> Default for AgentWaits<T> {
    fn default() -> Self {
        AgentWaits {
            waiting: Mutex::new(Vec::new()),
            added: Condvar::new(),
        }
    }
}

impl<T> AgentWaits<T> {
    /// `item` waits until the agent has recorded in `file` that it synced `revision`.
    pub fn add(&self, file: RevisionFile, revision: u64, item: T) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.push(Waiting {
            file,
            revision,
            deadline: Instant::now() + PATIENCE,
            item,
        });
        self.added.notify_one();
    }

    /// Waits until something waits (at most `idle`, for the caller to look whether it is to stop), then for the
    /// next look at the agent's revision: returns the pods it lets go, in the order they came.
    pub fn next(&self, idle: Duration) -> Vec<Released<T>> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.is_empty() {
            waiting = self
                .added
                .wait_timeout(waiting, idle)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if waiting.is_empty() {
                return Vec::new();
            }
        } else {
            drop(waiting);
            std::thread::sleep(POLL);
            waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        }
        // One read per file (a node's network config names one, unless it changes meanwhile).
        let mut read: Vec<(RevisionFile, Option<u64>)> = Vec::new();
        let mut synced = |file: &RevisionFile| match read.iter().find(|(f, _)| f == file) {
            Some((_, r)) => *r,
            None => {
                let r = std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse().ok());
                read.push((file.clone(), r));
                r
            }
        };
        let now = Instant::now();
        let mut released = Vec::new();
        let mut stay = Vec::new();
        for w in std::mem::take(&mut *waiting) {
            let done = synced(&w.file).is_some_and(|s| s >= w.revision);
            if done || now >= w.deadline {
                released.push(Released {
                    item: w.item,
                    late: !done,
                });
            } else {
                stay.push(w);
            }
        }
        *waiting = stay;
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> RevisionFile {
        std::env::temp_dir().join(format!("weft-agent-sync-{}-{name}", std::process::id()))
    }

    #[test]
    fn a_sync_lets_go_every_pod_it_covers_in_order() {
        let f = file("order");
        let _ = std::fs::remove_file(&f);
        let waits = AgentWaits::default();
        waits.add(f.clone(), 5, "a");
        waits.add(f.clone(), 9, "b");
        waits.add(f.clone(), 4, "c");
        assert!(
            waits.next(Duration::ZERO).is_empty(),
            "the agent has recorded nothing yet"
        );
        std::fs::write(&f, "5\n").unwrap();
        let go: Vec<&str> = waits.next(Duration::ZERO).into_iter().map(|r| r.item).collect();
        assert_eq!(go, ["a", "c"]);
        std::fs::write(&f, "8").unwrap();
        assert!(waits.next(Duration::ZERO).is_empty());
        std::fs::write(&f, "9").unwrap();
        let go = waits.next(Duration::ZERO);
        assert_eq!(go.len(), 1);
        assert_eq!((go[0].item, go[0].late), ("b", false));
        assert!(waits.next(Duration::from_millis(1)).is_empty(), "nothing waits");
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn a_pod_starts_anyway_once_its_patience_is_out() {
        let waits = AgentWaits::default();
        waits.add(file("never-written"), 5, "a");
        waits.waiting.lock().unwrap()[0].deadline = Instant::now();
        let go = waits.next(Duration::ZERO);
        assert_eq!(go.len(), 1);
        assert!(go[0].late);
    }
}
