//! weft's view of the cluster. Objects are the Kubernetes API types of `k8s-openapi`; this crate adds what every
//! component needs around them: reading manifests (multi-document YAML or JSON) with validation that names the
//! offending field, label selectors, and the `Snapshot` a node component plans from, fed by a `Source`; and compact
//! forms of the objects node components hold by the ten thousand.

pub mod compact;
pub mod kind;
pub mod manifest;
pub mod object;
pub mod selector;
pub mod snapshot;
mod validate;

pub use k8s_openapi;
pub use manifest::{ManifestError, parse};
pub use object::{Key, Object, Other};
pub use snapshot::{Snapshot, Source, SourceError};
/// The checks an update adds to those of `parse` (immutable fields), each error a `field <path>: ...` line.
pub use validate::update as validate_update;
