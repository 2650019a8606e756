//! PATCH bodies (placeholder until the strategic merge engine lands: JSON patch and JSON merge patch only).

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

pub fn patch(_group: &str, _kind: &str, current: &Value, ty: PatchType, body: &[u8]) -> Result<Value, PatchError> {
    let mut out = current.clone();
    match ty {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| PatchError(e.to_string()))?;
            json_patch::patch(&mut out, &p).map_err(|e| PatchError(e.to_string()))?;
        }
        _ => {
            let p: Value = serde_json::from_slice(body).map_err(|e| PatchError(e.to_string()))?;
            json_patch::merge(&mut out, &p);
        }
    }
    Ok(out)
}
