//! Tables without a kubectl printer: a custom resource's additionalPrinterColumns (the apiextensions server's
//! convertor), and Name plus Created At for any other kind (the apiserver's default convertor).

use super::age::{between, human_duration, parse};
use super::cells::{name, str_at};
use super::{AGE_DOC, NAME_DOC, definition};
use crate::jsonpath;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::time::SystemTime;

/// One of a CRD version's `additionalPrinterColumns`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    pub name: String,
    /// integer, number, string, boolean or date.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub description: String,
    /// 0 for default output, higher for `-o wide`.
    #[serde(default)]
    pub priority: i32,
    /// A simple JSONPath such as `.spec.replicas`, evaluated against each object.
    pub json_path: String,
}

impl PrinterColumn {
    /// The printer columns of the CRD (as JSON) for its `version`; none when the version declares none (the
    /// table then shows Age). Columns the CRD's validation would have refused are left out.
    pub fn from_crd(crd: &Value, version: &str) -> Vec<PrinterColumn> {
        let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
        let columns = versions
            .into_iter()
            .flatten()
            .find(|v| str_at(v, "/name") == version)
            .and_then(|v| v.get("additionalPrinterColumns"))
            .and_then(Value::as_array);
        columns
            .into_iter()
            .flatten()
            .filter_map(|c| PrinterColumn::deserialize(c).ok())
            .collect()
    }

    fn definition(&self) -> Value {
        let description = match self.description.as_str() {
            "" => format!(
                "Custom resource definition column (in JSONPath format): {}",
                self.json_path
            ),
            d => d.to_string(),
        };
        let mut def = definition(&self.name, &self.type_, self.priority.into(), &description);
        def["format"] = self.format.clone().into();
        def
    }

    /// The cell for `object`: the first value the path selects, typed by the column; null when there is none.
    fn cell(&self, object: &Value, now: SystemTime) -> Value {
        let found = jsonpath::select(object, &self.json_path).unwrap_or_default();
        let Some(&value) = found.first() else {
            return Value::Null;
        };
        match (self.type_.as_str(), value) {
            ("string", v) => jsonpath::text(v).into(),
            ("integer", Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, Value::from),
            ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
            ("boolean", Value::Bool(b)) => (*b).into(),
            ("date", Value::String(s)) if s.is_empty() => "<unknown>".into(),
            ("date", Value::String(s)) => match parse(s) {
                Some(t) => human_duration(between(t, now)).into(),
                None => "<invalid>".into(),
            },
            _ => Value::Null,
        }
    }
}

/// A custom resource's columns: Age when the CRD declares none, as apiextensions serves it.
pub fn columns(columns: &[PrinterColumn]) -> Cow<'_, [PrinterColumn]> {
    if !columns.is_empty() {
        return Cow::Borrowed(columns);
    }
    Cow::Owned(vec![PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: AGE_DOC.into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }])
}

/// Name, then the columns.
pub fn definitions(columns: &[PrinterColumn]) -> Vec<Value> {
    let mut definitions = vec![definition("Name", "string", 0, NAME_DOC)];
    definitions.extend(columns.iter().map(PrinterColumn::definition));
    definitions
}

/// One object's cells under `definitions(columns)`.
pub fn row(columns: &[PrinterColumn], object: &Value, now: SystemTime) -> Vec<Value> {
    let mut cells = vec![name(object)];
    cells.extend(columns.iter().map(|c| c.cell(object, now)));
    cells
}

/// Name and Created At (RFC 3339, UTC): the apiserver's default convertor.
pub fn default_definitions() -> Vec<Value> {
    vec![
        definition("Name", "string", 0, NAME_DOC),
        definition("Created At", "date", 0, AGE_DOC),
    ]
}

/// One object's cells under `default_definitions()`.
pub fn default_row(object: &Value) -> Vec<Value> {
    // Go prints a zero time for an object without a creation timestamp.
    let created = parse(str_at(object, "/metadata/creationTimestamp")).map_or_else(
        || "0001-01-01T00:00:00Z".into(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    vec![name(object), created.into()]
}
