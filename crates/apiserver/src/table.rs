//! Placeholder until server-side printing lands: Name and Age.

use serde_json::{Value, json};
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<IncludeObject, String> {
        match s {
            None | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("Object") => Ok(IncludeObject::Object),
            Some("None") => Ok(IncludeObject::None),
            Some(other) => Err(format!("includeObject: unsupported value {other:?}")),
        }
    }
}

pub struct PrinterColumn;

pub fn table(
    _kind: &str,
    objects: &[&Value],
    include: IncludeObject,
    _columns: Option<&[PrinterColumn]>,
    headers: bool,
    _now: SystemTime,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": [o["metadata"]["name"], ""]});
            match include {
                IncludeObject::Object => row["object"] = (*o).clone(),
                IncludeObject::Metadata => {
                    row["object"] = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]})
                }
                IncludeObject::None => {}
            }
            row
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows});
    if headers {
        t["columnDefinitions"] = json!([
            {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "", "priority": 0},
        ]);
    }
    t
}
