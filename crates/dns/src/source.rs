//! A `Source` of one fixed snapshot, read from a manifest file: for tests and the benchmark.

use std::path::Path;
use std::sync::Arc;
use weft_model::{Object, Snapshot, Source, SourceError};

/// Delivers one snapshot, then blocks forever (a fixed cluster never changes).
pub struct StaticSource {
    /// Given away with the first delivery, so that only the server's table stays in memory.
    snapshot: Option<Arc<Snapshot>>,
}

impl StaticSource {
    /// The objects as one snapshot (revision 1); objects without a namespace go to `default`.
    pub fn new(objects: impl IntoIterator<Item = Object>) -> StaticSource {
        let objects = objects.into_iter().map(|mut o| {
            o.default_namespace("default");
            o
        });
        StaticSource {
            snapshot: Some(Arc::new(Snapshot::new(1, objects))),
        }
    }

    /// The objects of a manifest file (multi-document YAML or JSON).
    pub fn from_file(path: &Path) -> Result<StaticSource, SourceError> {
        let fail = |msg: String| SourceError::Unavailable {
            what: format!("manifest {}", path.display()),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        // A JSON `List` is decoded item by item, each JSON tree dropped as soon as its object exists (the benchmark's
        // 10,000 Services would otherwise hold the whole tree and the objects at once).
        if text.trim_start().starts_with('{')
            && let Ok(serde_json::Value::Object(mut list)) = serde_json::from_str(&text)
            && list.get("kind").and_then(|k| k.as_str()) == Some("List")
        {
            drop(text);
            let items = match list.remove("items") {
                Some(serde_json::Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let mut objects = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                objects.push(weft_model::manifest::from_value(item).map_err(|e| fail(format!("items[{i}]: {e}")))?);
            }
            return Ok(StaticSource::new(objects));
        }
        let objects = weft_model::parse(&text, &path.display().to_string()).map_err(|e| fail(e.to_string()))?;
        Ok(StaticSource::new(objects))
    }
}

impl Source for StaticSource {
    fn next(&mut self, after: u64) -> Result<Arc<Snapshot>, SourceError> {
        if let Some(snapshot) = self.snapshot.take_if(|s| after < s.revision) {
            return Ok(snapshot);
        }
        loop {
            std::thread::park();
        }
    }
}
