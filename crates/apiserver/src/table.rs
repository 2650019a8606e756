//! Server-side printing: the `meta.k8s.io/v1` `Table` kubectl asks for (`Accept: application/json;as=Table;v=v1;
//! g=meta.k8s.io`), with the columns and cell formats of kubectl's own printers (kubernetes
//! pkg/printers/internalversion/printers.go), the apiserver's default convertor (Name, Created At) for kinds
//! without one, and a CRD's additionalPrinterColumns for custom resources.
//!
//! Like the real server, every table carries the wide (priority 1) columns too; kubectl shows them with `-o wide`.

mod age;
mod apps;
mod cells;
mod core;
mod custom;
mod network;
mod other;
mod pod;

pub use age::human_duration;
pub use custom::PrinterColumn;

use serde::Serialize;
use serde_json::{Value, json};
use std::time::SystemTime;
use weft_model::Object;
use weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// What each row carries as `object` (`?includeObject=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` holding the object's metadata (the default): enough for kubectl's NAMESPACE column.
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// The value of `?includeObject=`; absent or empty means `Metadata`. The error is the message for a 400.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or_default() {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// What a row is printed from: a stored object (its JSON form is made for the row's cells only, and its metadata
/// or whole self is serialised straight from the typed value), or an object already in JSON (watch events).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Stored(&'a Object),
    Json(&'a Value),
}

impl<'a> From<&'a Object> for Source<'a> {
    fn from(o: &'a Object) -> Self {
        Source::Stored(o)
    }
}

impl<'a> From<&'a Value> for Source<'a> {
    fn from(v: &'a Value) -> Self {
        Source::Json(v)
    }
}

/// The `Table` for `objects` of `kind`, as the JSON bytes of the response.
///
/// `columns` is `Some` for a custom resource: its CRD's additionalPrinterColumns (an empty slice gives the
/// default Age column, as the apiextensions server does); `None` selects kubectl's printer for a built-in kind, or
/// Name and Created At for a kind without one. `headers` is false for watch events after the first (their
/// tables carry no column definitions). `now` is the time AGE cells count from; `list_meta` becomes the table's
/// `metadata` (resourceVersion, continue).
///
/// Each row is written as soon as it is made, with the metadata it carries borrowed from the object: a listing
/// holds one object's JSON form and the bytes, never a page of rows as JSON trees (at 10,000 Services those were
/// the control plane's peak).
pub fn table<'a, S: Into<Source<'a>>>(
    kind: &str,
    objects: impl IntoIterator<Item = S>,
    include: IncludeObject,
    columns: Option<&[PrinterColumn]>,
    headers: bool,
    now: SystemTime,
    list_meta: &Value,
) -> Vec<u8> {
    let custom = columns.map(custom::columns);
    let builtin = printer(kind).filter(|_| custom.is_none());
    let definitions = match (&custom, builtin) {
        (_, _) if !headers => Vec::new(),
        (Some(columns), _) => custom::definitions(columns),
        (None, Some((cols, _))) => cols.iter().map(Col::definition).collect(),
        (None, None) => custom::default_definitions(),
    };
    let mut out = Vec::new();
    out.extend_from_slice(br#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":"#);
    write_json(&mut out, list_meta);
    out.extend_from_slice(br#","columnDefinitions":"#);
    write_json(&mut out, &definitions);
    out.extend_from_slice(br#","rows":["#);
    for (i, source) in objects.into_iter().enumerate() {
        let source: Source = source.into();
        let owned;
        let object = match source {
            Source::Stored(o) => {
                owned = o.to_value();
                &owned
            }
            Source::Json(v) => v,
        };
        let cells = match (&custom, builtin) {
            (Some(columns), _) => custom::row(columns, object, now),
            (None, Some((_, print))) => print(object, now),
            (None, None) => custom::default_row(object),
        };
        let conditions = (kind == "Pod" && custom.is_none())
            .then(|| pod::conditions(object))
            .flatten();
        let row = Row {
            cells,
            conditions,
            object: match include {
                IncludeObject::None => None,
                IncludeObject::Metadata => Some(RowObject::Metadata(PartialObjectMetadata {
                    kind: "PartialObjectMetadata",
                    api_version: "meta.k8s.io/v1",
                    metadata: match source {
                        Source::Stored(o) => Metadata::Typed(o.meta()),
                        Source::Json(v) => v.get("metadata").map_or(Metadata::Empty {}, Metadata::Json),
                    },
                })),
                IncludeObject::Object => Some(match source {
                    Source::Stored(o) => RowObject::Stored(o),
                    Source::Json(v) => RowObject::Json(v),
                }),
            },
        };
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &row);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Appends `value` as JSON; the values written here always serialise (every map key is a string).
fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let _ = serde_json::to_writer(out, value);
}

/// One `TableRow`.
#[derive(Serialize)]
struct Row<'a> {
    cells: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<RowObject<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RowObject<'a> {
    Metadata(PartialObjectMetadata<'a>),
    Stored(&'a Object),
    Json(&'a Value),
}

#[derive(Serialize)]
struct PartialObjectMetadata<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Metadata<'a> {
    Typed(&'a ObjectMeta),
    Json(&'a Value),
    /// An object without metadata: `{}`.
    Empty {},
}

/// The cells of one object's row, one per column; `now` for ages.
type Print = fn(&Value, SystemTime) -> Vec<Value>;

/// kubectl's printer for a built-in kind.
fn printer(kind: &str) -> Option<(&'static [Col], Print)> {
    Some(match kind {
        "Pod" => (pod::COLUMNS, pod::row),
        "Service" => (core::SERVICE, core::service),
        "Endpoints" => (core::ENDPOINTS, core::endpoints),
        "Node" => (core::NODE, core::node),
        "Namespace" => (core::NAMESPACE, core::namespace),
        "Event" => (core::EVENT, core::event),
        "ConfigMap" => (core::CONFIG_MAP, core::config_map),
        "Secret" => (core::SECRET, core::secret),
        "ServiceAccount" => (core::SERVICE_ACCOUNT, core::service_account),
        "Deployment" => (apps::DEPLOYMENT, apps::deployment),
        "ReplicaSet" => (apps::REPLICA_SET, apps::replica_set),
        "DaemonSet" => (apps::DAEMON_SET, apps::daemon_set),
        "StatefulSet" => (apps::STATEFUL_SET, apps::stateful_set),
        "Job" => (apps::JOB, apps::job),
        "CronJob" => (apps::CRON_JOB, apps::cron_job),
        "EndpointSlice" => (network::ENDPOINT_SLICE, network::endpoint_slice),
        "Ingress" => (network::INGRESS, network::ingress),
        "IngressClass" => (network::INGRESS_CLASS, network::ingress_class),
        "NetworkPolicy" => (network::NETWORK_POLICY, network::network_policy),
        "RoleBinding" => (other::ROLE_BINDING, other::role_binding),
        "ClusterRoleBinding" => (other::CLUSTER_ROLE_BINDING, other::role_binding),
        "Lease" => (other::LEASE, other::lease),
        "PodDisruptionBudget" => (other::POD_DISRUPTION_BUDGET, other::pod_disruption_budget),
        _ => return None,
    })
}

/// A column of a built-in printer.
struct Col {
    name: &'static str,
    type_: &'static str,
    priority: u8,
    description: &'static str,
}

impl Col {
    fn definition(&self) -> Value {
        definition(self.name, self.type_, self.priority.into(), self.description)
    }
}

/// A column kubectl shows by default.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Col {
    Col {
        name,
        type_,
        priority: 0,
        description,
    }
}

/// A column kubectl shows only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Col {
    Col {
        name,
        type_,
        priority: 1,
        description,
    }
}

/// A `TableColumnDefinition`; the Name column carries format `name`, which kubectl uses for `kind/name`.
fn definition(name: &str, type_: &str, priority: i64, description: &str) -> Value {
    json!({
        "name": name,
        "type": type_,
        "format": if name == "Name" { "name" } else { "" },
        "description": description,
        "priority": priority,
    })
}

/// ObjectMeta's documentation of `name`, the description of every Name column.
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
resources may allow a client to request the generation of an appropriate name automatically. Name is primarily \
intended for creation idempotence and configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// ObjectMeta's documentation of `creationTimestamp`, the description of every Age column.
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. \
It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. \
It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: \
https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Col = col("Name", "string", NAME_DOC);
const AGE: Col = col("Age", "string", AGE_DOC);
const CONTAINERS: Col = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Col = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

#[cfg(test)]
mod tests;
