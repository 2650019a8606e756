//! The lab as a `Source`: a watch on the supervisor's API. A node agent in cluster mode would use the
//! Kubernetes API instead and see the same snapshots.

use crate::api::{Client, Request};
use crate::spec::Paths;
use std::sync::Arc;
use weft_model::{Snapshot, Source, SourceError};

pub struct LabSource {
    paths: Paths,
    /// The kinds the consumer plans from (all when none).
    kinds: Option<Vec<String>>,
    watch: Option<Client>,
    /// The last snapshot delivered by the watch, which its deltas apply to.
    current: Option<Arc<Snapshot>>,
}

impl LabSource {
    pub fn new(paths: Paths, kinds: Option<Vec<String>>) -> LabSource {
        LabSource {
            paths,
            kinds,
            watch: None,
            current: None,
        }
    }

    fn fail(&mut self, msg: String) -> SourceError {
        self.watch = None;
        // A delta is only ever applied to what this watch sent; a new watch starts from a whole snapshot.
        self.current = None;
        SourceError::Unavailable {
            what: format!("lab {}", self.paths.lab),
            msg,
        }
    }
}

impl Source for LabSource {
    fn next(&mut self, after: u64) -> Result<Arc<Snapshot>, SourceError> {
        loop {
            if self.watch.is_none() {
                let mut client = Client::connect(&self.paths).map_err(|e| self.fail(e.to_string()))?;
                client
                    .send(&Request::Watch {
                        after: 0,
                        kinds: self.kinds.clone(),
                    })
                    .map_err(|e| self.fail(e.to_string()))?;
                self.watch = Some(client);
            }
            let Some(client) = self.watch.as_mut() else { continue };
            let stored = client.next_snapshot().map_err(|e| self.fail(e.to_string()))?;
            let next = match &self.current {
                Some(base) => base.advance(stored),
                None if stored.delta => Err("a delta before any whole snapshot".to_string()),
                None => Snapshot::from_stored(stored),
            };
            let next = Arc::new(next.map_err(|e| self.fail(e))?);
            self.current = Some(next.clone());
            if next.revision > after {
                return Ok(next);
            }
        }
    }
}
