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
}

impl LabSource {
    pub fn new(paths: Paths, kinds: Option<Vec<String>>) -> LabSource {
        LabSource {
            paths,
            kinds,
            watch: None,
        }
    }

    fn fail(&mut self, msg: String) -> SourceError {
        self.watch = None;
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
                        after,
                        kinds: self.kinds.clone(),
                    })
                    .map_err(|e| self.fail(e.to_string()))?;
                self.watch = Some(client);
            }
            let Some(client) = self.watch.as_mut() else { continue };
            let stored = client.next_snapshot().map_err(|e| self.fail(e.to_string()))?;
            if stored.revision > after {
                let snap = Snapshot::from_stored(stored).map_err(|e| self.fail(e))?;
                return Ok(Arc::new(snap));
            }
        }
    }
}
