//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) as the JSON the rest of the server
//! reads. kubectl's typed clients (`create configmap|secret|deployment|...`, `run`, `auth can-i|whoami`,
//! `create token`) send nothing else. A body is `k8s\0` and a `runtime.Unknown` whose `raw` is the object's own
//! message; the object is read field by field with the message table in `schema.rs`, generated from the
//! upstream generated.proto files (whose field names are the JSON names).

// Generated: one field a line, as the generator writes it.
#[rustfmt::skip]
mod schema;
pub(crate) mod wire;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use weft_model::k8s_openapi::jiff::Timestamp;
pub use wire::WireError;
use wire::{Reader, WireType};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Messages nest far less than this in any Kubernetes type; a bound keeps hostile input off the stack.
const MAX_DEPTH: usize = 64;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    Prefix,
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("content encoding {0:?} is not supported")]
    Encoding(String),
    #[error("no protobuf message is known for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{message}.{field}: {problem}")]
    Field {
        message: String,
        field: &'static str,
        problem: String,
    },
    #[error("messages nest deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// One message of the table: its full protobuf name and fields sorted by number.
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

/// A field: its number, JSON name, type, and how it appears in JSON.
struct Field {
    number: u32,
    json: &'static str,
    ty: Type,
    form: Form,
}

const fn field(number: u32, json: &'static str, ty: Type, form: Form) -> Field {
    Field { number, json, ty, form }
}

enum Form {
    /// One value, written as read.
    Single,
    /// A JSON array (maps are `Single` `Type::Map`s).
    Repeated,
    /// A non-pointer `omitempty` scalar: the protobuf encoder writes its zero value, which Go's JSON leaves out.
    OmitZero,
    /// An embedded struct whose fields JSON inlines (`Volume.volumeSource`, `IngressRule.ingressRuleValue`).
    Inline,
}

/// A field's type; the apimachinery messages whose JSON form is not an object have their own.
enum Type {
    String,
    Bool,
    Int32,
    Int64,
    /// base64 in JSON.
    Bytes,
    /// A message of the table, by full name.
    Message(&'static str),
    /// `map<string, V>`: a JSON object.
    Map(&'static Type),
    /// meta/v1 `Time` {seconds, nanos}: an RFC 3339 string to the second.
    Time,
    /// meta/v1 `MicroTime`: an RFC 3339 string with microseconds.
    MicroTime,
    /// intstr `IntOrString` {type, intVal, strVal}: a number or a string.
    IntOrString,
    /// resource `Quantity` {string}: a string.
    Quantity,
    /// runtime `RawExtension` / meta/v1 `FieldsV1` {raw}: the embedded JSON.
    RawJson,
    /// `ExtraValue` {repeated items}: an array of strings.
    StringList,
}

/// The JSON object a Kubernetes protobuf body holds, with the `apiVersion` and `kind` of its envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let unknown = body.strip_prefix(MAGIC).ok_or(ProtobufError::Prefix)?;
    let (mut api_version, mut kind, mut raw, mut encoding) = (String::new(), String::new(), &[][..], String::new());
    let mut r = Reader::new(unknown);
    while let Some((number, wt)) = r.key()? {
        match (number, wt) {
            (1, WireType::Len) => {
                let mut type_meta = Reader::new(r.bytes()?);
                while let Some((number, wt)) = type_meta.key()? {
                    match (number, wt) {
                        (1, WireType::Len) => api_version = lossy(type_meta.bytes()?),
                        (2, WireType::Len) => kind = lossy(type_meta.bytes()?),
                        _ => type_meta.skip(wt)?,
                    }
                }
            }
            (2, WireType::Len) => raw = r.bytes()?,
            (3, WireType::Len) => encoding = lossy(r.bytes()?),
            _ => r.skip(wt)?,
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::Encoding(encoding));
    }
    let message = top_level(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    object.extend(decode_message(message, raw, 0)?);
    Ok(Value::Object(object))
}

/// The message of a kind, e.g. `v1` `ConfigMap` → `k8s.io.api.core.v1.ConfigMap`.
fn top_level(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (_, package) = schema::PACKAGES.iter().find(|(v, _)| *v == api_version)?;
    message(&format!("{package}.{kind}"))
}

fn message(name: &str) -> Option<&'static Message> {
    let i = schema::MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok()?;
    schema::MESSAGES.get(i)
}

fn decode_message(message: &Message, bytes: &[u8], depth: usize) -> Result<Map<String, Value>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut object = Map::new();
    let mut r = Reader::new(bytes);
    while let Some((number, wt)) = r.key()? {
        let Ok(i) = message.fields.binary_search_by_key(&number, |f| f.number) else {
            r.skip(wt)?; // a field newer than the table (or from a package outside it)
            continue;
        };
        let field = &message.fields[i];
        let bad = |problem: String| ProtobufError::Field {
            message: message.name.into(),
            field: field.json,
            problem,
        };
        match &field.ty {
            Type::Map(value_type) => {
                let (key, value) = map_entry(value_type, expect(&mut r, wt, WireType::Len, &bad)?, depth, &bad)?;
                let map = object.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value.unwrap_or(Value::Null));
                }
            }
            ty if matches!(field.form, Form::Repeated) => {
                let list = object.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else { continue };
                if wt == WireType::Len && is_varint(ty) {
                    // A packed list of numbers or booleans.
                    let mut packed = Reader::new(r.bytes()?);
                    while !packed.is_empty() {
                        list.extend(value(ty, &mut packed, WireType::Varint, depth, &bad)?);
                    }
                } else {
                    list.extend(value(ty, &mut r, wt, depth, &bad)?);
                }
            }
            ty => match value(ty, &mut r, wt, depth, &bad)? {
                Some(Value::Object(fields)) if matches!(field.form, Form::Inline) => object.extend(fields),
                Some(v) if !(matches!(field.form, Form::OmitZero) && is_zero(&v)) => {
                    object.insert(field.json.into(), v);
                }
                _ => {
                    object.remove(field.json);
                }
            },
        }
    }
    Ok(object)
}

/// A map entry: key 1 (string), value 2; either may be missing (its zero value then).
fn map_entry(
    ty: &Type,
    bytes: &[u8],
    depth: usize,
    bad: &impl Fn(String) -> ProtobufError,
) -> Result<(String, Option<Value>), ProtobufError> {
    let mut r = Reader::new(bytes);
    let (mut key, mut value) = (String::new(), None);
    while let Some((number, wt)) = r.key()? {
        match number {
            1 => key = lossy(expect(&mut r, wt, WireType::Len, bad)?),
            2 => value = self::value(ty, &mut r, wt, depth, bad)?,
            _ => r.skip(wt)?,
        }
    }
    if value.is_none() {
        value = zero(ty, bad)?;
    }
    Ok((key, value))
}

/// The value of a map entry that has none: its type's zero value, as Go would write it.
fn zero(ty: &Type, bad: &impl Fn(String) -> ProtobufError) -> Result<Option<Value>, ProtobufError> {
    Ok(Some(match ty {
        Type::String | Type::Bytes => json!(""),
        Type::Bool => json!(false),
        Type::Int32 | Type::Int64 => json!(0),
        Type::Message(_) | Type::Map(_) => json!({}),
        special => return special_value(special, &[], bad),
    }))
}

fn is_varint(ty: &Type) -> bool {
    matches!(ty, Type::Bool | Type::Int32 | Type::Int64)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Reads a length-delimited payload, refusing any other wire type for the field.
fn expect<'a>(
    r: &mut Reader<'a>,
    got: WireType,
    want: WireType,
    bad: &impl Fn(String) -> ProtobufError,
) -> Result<&'a [u8], ProtobufError> {
    if got != want {
        return Err(bad(format!("wire type {got:?} where {want:?} was expected")));
    }
    Ok(r.bytes()?)
}

/// One value of type `ty`; `None` for a value JSON leaves out (a zero `Time`, an empty `RawExtension`).
fn value(
    ty: &Type,
    r: &mut Reader,
    wt: WireType,
    depth: usize,
    bad: &impl Fn(String) -> ProtobufError,
) -> Result<Option<Value>, ProtobufError> {
    let number = |r: &mut Reader| -> Result<u64, ProtobufError> {
        match wt {
            WireType::Varint => Ok(r.varint()?),
            _ => Err(bad(format!("wire type {wt:?} where a varint was expected"))),
        }
    };
    let v = match ty {
        Type::String => json!(lossy(expect(r, wt, WireType::Len, bad)?)),
        Type::Bool => json!(number(r)? != 0),
        // Negative int32s are sign-extended to 64 bits on the wire: the truncation restores them.
        Type::Int32 => json!(number(r)? as i32),
        Type::Int64 => json!(number(r)? as i64),
        Type::Bytes => json!(BASE64.encode(expect(r, wt, WireType::Len, bad)?)),
        Type::Message(name) => {
            let message = message(name).ok_or_else(|| bad(format!("no message {name} in the table")))?;
            Value::Object(decode_message(message, expect(r, wt, WireType::Len, bad)?, depth + 1)?)
        }
        Type::Map(_) => return Err(bad("a map inside a map".into())),
        special => return special_value(special, expect(r, wt, WireType::Len, bad)?, bad),
    };
    Ok(Some(v))
}

/// The JSON forms of the apimachinery messages that are not objects.
fn special_value(
    ty: &Type,
    bytes: &[u8],
    bad: &impl Fn(String) -> ProtobufError,
) -> Result<Option<Value>, ProtobufError> {
    let mut r = Reader::new(bytes);
    // Every special message is a handful of scalar fields: collect them by number.
    let (mut ints, mut strings, mut raws) = ([0i64; 4], Vec::new(), Vec::new());
    while let Some((number, wt)) = r.key()? {
        match (number, wt) {
            (1..=3, WireType::Varint) => ints[number as usize] = r.varint()? as i64,
            (1..=3, WireType::Len) => {
                let b = r.bytes()?;
                raws.push((number, b));
                strings.push((number, lossy(b)));
            }
            _ => r.skip(wt)?,
        }
    }
    let string = |n: u32| strings.iter().rev().find(|(k, _)| *k == n).map(|(_, s)| s.clone());
    Ok(match ty {
        // Go keeps a zero Time as an empty message and writes it as null.
        Type::Time | Type::MicroTime if bytes.is_empty() => None,
        Type::Time => Some(json!(timestamp(ints[1], 0, bad)?.to_string())),
        Type::MicroTime => {
            let t = timestamp(ints[1], ints[2] as i32, bad)?;
            Some(json!(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
        }
        Type::IntOrString if ints[1] == 1 => Some(json!(string(3).unwrap_or_default())),
        Type::IntOrString => Some(json!(ints[2] as i32)),
        // A zero Quantity (an empty string) is written "0" by Go.
        Type::Quantity => Some(json!(string(1).filter(|s| !s.is_empty()).unwrap_or_else(|| "0".into()))),
        Type::RawJson => match raws.iter().rev().find(|(k, _)| *k == 1) {
            Some((_, raw)) if !raw.is_empty() => {
                Some(serde_json::from_slice(raw).map_err(|e| bad(format!("embedded object is not JSON: {e}")))?)
            }
            _ => None,
        },
        Type::StringList => Some(json!(
            strings
                .into_iter()
                .filter(|(k, _)| *k == 1)
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        )),
        _ => return Err(bad("not a special message".into())),
    })
}

fn timestamp(seconds: i64, nanos: i32, bad: &impl Fn(String) -> ProtobufError) -> Result<Timestamp, ProtobufError> {
    Timestamp::new(seconds, nanos).map_err(|e| bad(format!("time out of range: {e}")))
}

/// Go strings may hold any bytes; its JSON encoder writes invalid UTF-8 as U+FFFD, and so does this.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests;
