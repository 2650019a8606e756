//! Strategic merge patch as apimachinery's `strategicpatch.StrategicMergeMapPatch` applies it on the server
//! (parallel deletion lists merged, unmatched nulls ignored): maps merge key by key and `null` deletes; a list field
//! with the `merge` strategy merges its items by the field's merge key (lists of primitives are unioned); any other
//! list is replaced. Directives: `$patch: replace|delete|merge`, `$retainKeys`, `$deleteFromPrimitiveList/<field>`
//! and `$setElementOrder/<field>`. One deliberate difference: a patch value that lands where the object had nothing
//! is itself merged into nothing, so no directive reaches the stored object (the apiserver drops them when it decodes
//! into the Go struct).

use super::schema::{self, Smp};
use super::{PatchError, gofmt};
use serde_json::{Map, Value};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

type Result<T> = std::result::Result<T, PatchError>;

/// Applies strategic merge patch `body` to `current`, of kind `kind` in `group`.
pub(super) fn patch(group: &str, kind: &str, current: &Value, body: &[u8]) -> Result<Value> {
    let ty = schema::root_type(group, kind).ok_or_else(|| PatchError::unsupported_media_type(group, kind))?;
    let patch = match super::parse_json(body)? {
        Value::Object(map) => map,
        // Go decodes `null` into a nil map: an empty patch.
        Value::Null => Map::new(),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                super::json_kind_name(&other)
            )));
        }
    };
    let original = current.as_object().cloned().unwrap_or_default();
    merge_map(original, patch, ty).map(Value::Object)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: &'static str,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                merge_map(Map::new(), patch, ty)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    retain_keys(&mut original, &mut patch)?;
    set_element_order(&mut original, &mut patch, ty)?;

    for (k, patch_v) in patch {
        let (key, delete_list) = if k.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let key = extract_key(&k, DELETE_FROM_PRIMITIVE_LIST).ok_or_else(bad_primitive_list)?;
            (key.to_owned(), true)
        } else {
            (k, false)
        };
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let field = schema::field(ty, &key);
        let Some(orig_v) = original.remove(&key) else {
            // Deleting from a list the object does not have deletes nothing.
            if !delete_list {
                original.insert(key, fresh(patch_v, field)?);
            }
            continue;
        };
        let merged = match (orig_v, patch_v) {
            (Value::Object(o), Value::Object(p)) if field.smp != Smp::Replace => {
                Value::Object(merge_map(o, p, field.ty)?)
            }
            (Value::Array(o), Value::Array(p)) => match field.smp {
                Smp::Merge(merge_key) => Value::Array(merge_list(o, p, field.ty, merge_key, delete_list)?),
                _ if delete_list => Value::Array(delete_from(o, &p)),
                _ => fresh(Value::Array(p), field)?,
            },
            (o, _) if delete_list => o,
            (_, p) => fresh(p, field)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// A patch value with nothing under it: merged into nothing, which applies its directives and drops its nulls.
fn fresh(v: Value, field: &schema::Field) -> Result<Value> {
    Ok(match v {
        Value::Object(map) => Value::Object(merge_map(Map::new(), map, field.ty)?),
        Value::Array(items) => match field.smp {
            Smp::Merge(merge_key) if !items.is_empty() => {
                Value::Array(merge_list(Vec::new(), items, field.ty, merge_key, false)?)
            }
            _ => Value::Array(fresh_items(items, field.ty)?),
        },
        scalar => scalar,
    })
}

/// Items of a list replaced whole, each merged into nothing; an item deleting itself goes.
fn fresh_items(items: Vec<Value>, ty: &'static str) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(map) if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") => {}
            Value::Object(map) => out.push(Value::Object(merge_map(Map::new(), map, ty)?)),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `$retainKeys`: keys of the original not listed go; every non-null patch key must be listed.
fn retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(bad_retain_keys());
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    let unlisted = patch.iter().any(|(k, v)| {
        !v.is_null() && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST) && !k.starts_with(SET_ELEMENT_ORDER) && !listed(k)
    });
    if unlisted {
        return Err(bad_retain_keys());
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any) and orders the result: the patch items
/// as the directive lists them, a server-only item before a patch item only where the server had it before.
fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: &'static str,
) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order) = patch.remove(&directive) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let key = extract_key(&directive, SET_ELEMENT_ORDER)
            .ok_or_else(bad_set_element_order)?
            .to_owned();
        let orig_list = match original.get(&key) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(bad_arg_type("[]interface {}", other)),
        };
        let patch_list = match patch.remove(&key) {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(other) => return Err(bad_arg_type("[]interface {}", &other)),
        };
        let field = schema::field(ty, &key);
        let merge_key = match field.smp {
            Smp::Merge(k) => k,
            _ => "",
        };
        validate_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;
        let kind = element_kind(&[
            orig_list.as_deref().unwrap_or_default(),
            patch_list.as_deref().unwrap_or_default(),
        ]);
        let server_order = orig_list.clone().unwrap_or_default();
        let merged = match (orig_list, patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => match fresh(Value::Array(p), field)? {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) => match field.smp {
                Smp::Merge(k) => merge_list(o, p, field.ty, k, false)?,
                _ => fresh_items(p, field.ty)?,
            },
            (None, None) => continue,
        };
        let kind = kind?;
        let (patch_items, server_only) = partition(merged, &order, merge_key)?;
        let ordered = normalize_order(patch_items, server_only, &order, &server_order, merge_key, kind)?;
        original.insert(key, Value::Array(ordered));
    }
    Ok(())
}

/// The patch list's items (but deletions) must appear in the `$setElementOrder` list, in the same relative order.
fn validate_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_empty() {
            kept.push(item);
            continue;
        }
        let Value::Object(map) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        if map.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
            kept.push(item);
        }
    }
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p].as_object().is_some_and(|m| m.contains_key(DIRECTIVE)) {
            p += 1;
            continue;
        }
        if merge_key_equal(kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        return Err(PatchError::Internal(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            gofmt::value(&Value::Array(patch_list.to_vec())),
            gofmt::value(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(same(left, right));
    }
    let l = merge_key_value(left, merge_key)?;
    let r = merge_key_value(right, merge_key)?;
    Ok(same(l, r))
}

fn merge_key_value<'a>(item: &'a Value, merge_key: &str) -> Result<&'a Value> {
    let Value::Object(map) = item else {
        return Err(bad_arg_type("map[string]interface {}", item));
    };
    map.get(merge_key).ok_or_else(|| no_merge_key(item, merge_key))
}

/// A list field with the merge strategy: primitives are unioned (or, for a `$deleteFromPrimitiveList`, removed);
/// maps are matched by `merge_key` and merged, new ones appended, `$patch: delete` items delete and a
/// `$patch: replace` item makes the rest of the patch list the result. The result keeps the patch's order for its
/// items and the server's for the others; an item new to the server goes before the server-only items, as in Go.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    ty: &'static str,
    merge_key: &str,
    delete_list: bool,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&[&original, &patch])?;
    let (merged, patch, server_order, merge_key) = if kind != Kind::Object {
        if delete_list {
            return Ok(delete_from(original, &patch));
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.iter().any(|m| same(m, v)) {
                merged.push(v.clone());
            }
        }
        (merged, patch, original, "")
    } else {
        if merge_key.is_empty() {
            return Err(PatchError::Internal(
                "cannot merge lists without merge key for type struct".into(),
            ));
        }
        let (original, patch) = apply_list_directives(original, patch, ty, merge_key)?;
        let server_order = original.clone();
        let merged = merge_items(original, &patch, ty, merge_key)?;
        (merged, patch, server_order, merge_key)
    };
    let (patch_items, server_only) = partition(merged, &patch, merge_key)?;
    normalize_order(patch_items, server_only, &patch, &server_order, merge_key, kind)
}

fn delete_from(original: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    original
        .into_iter()
        .filter(|v| !to_delete.iter().any(|d| same(d, v)))
        .collect()
}

/// Handles the `$patch` items of a list of maps; returns the original and the patch items left to merge.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    ty: &'static str,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            rest.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let key = merge_key_value(&item, merge_key)?;
                original.retain(|o| !o.get(merge_key).is_some_and(|v| same(v, key)));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Internal(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => {
                let map = item.as_object().cloned().unwrap_or_default();
                return Err(bad_patch_type(directive, &map));
            }
        }
    }
    if replace {
        return Ok((fresh_items(rest, ty)?, Vec::new()));
    }
    Ok((original, rest))
}

/// Merges each patch item into the original item with the same merge key, or appends it.
fn merge_items(mut original: Vec<Value>, patch: &[Value], ty: &'static str, merge_key: &str) -> Result<Vec<Value>> {
    for item in patch {
        let key = merge_key_value(item, merge_key)?;
        let Value::Object(item_map) = item.clone() else {
            continue;
        };
        let found = original
            .iter()
            .position(|o| o.get(merge_key).is_some_and(|v| same(v, key)));
        match found {
            Some(i) => {
                let orig = std::mem::take(&mut original[i]);
                let orig = orig.as_object().cloned().unwrap_or_default();
                original[i] = Value::Object(merge_map(orig, item_map, ty)?);
            }
            None => original.push(Value::Object(merge_map(Map::new(), item_map, ty)?)),
        }
    }
    Ok(original)
}

/// Splits `merged` into the items present in `by` (by merge key for maps) and the rest.
fn partition(merged: Vec<Value>, by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for item in merged {
        let found = if merge_key.is_empty() {
            by.iter().any(|b| same(b, &item))
        } else {
            let key = merge_key_value(&item, merge_key)?;
            let mut found = false;
            for (i, b) in by.iter().enumerate() {
                let Value::Object(map) = b else {
                    return Err(PatchError::Internal(format!("value for key {i} is not a map.")));
                };
                if map.get(merge_key).is_some_and(|v| same(v, key)) {
                    found = true;
                    break;
                }
            }
            found
        };
        if found { present.push(item) } else { absent.push(item) }
    }
    Ok((present, absent))
}

/// Sorts the patch items by `patch_order` and the server-only items by `server_order`, then interleaves them:
/// a server-only item goes before a patch item only when the server had it before that item.
fn normalize_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>> {
    let right = sort_by_order(patch_items, patch_order, merge_key, kind)?;
    let left = sort_by_order(server_only, server_order, merge_key, kind)?;
    let position = |v: &Value| index_of(server_order, v, merge_key, kind);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((position(l), position(r)), (Some(li), Some(ri)) if li < ri),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    Ok(out)
}

/// Stable sort by position in `order`; for maps every item needs the merge key and deletions go last.
fn sort_by_order(items: Vec<Value>, order: &[Value], merge_key: &str, kind: Kind) -> Result<Vec<Value>> {
    let (mut items, deletions) = if kind == Kind::Object {
        for v in items.iter().chain(order) {
            merge_key_value(v, merge_key)?;
        }
        items
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
    } else {
        (items, Vec::new())
    };
    items.sort_by_key(|v| index_of(order, v, merge_key, kind).unwrap_or(usize::MAX));
    items.extend(deletions);
    Ok(items)
}

fn index_of(list: &[Value], item: &Value, merge_key: &str, kind: Kind) -> Option<usize> {
    if kind == Kind::Object {
        let key = item.get(merge_key);
        list.iter().position(|v| match (v.get(merge_key), key) {
            (Some(a), Some(b)) => same(a, b),
            (None, None) => true,
            _ => false,
        })
    } else {
        list.iter().position(|v| same(v, item))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The one kind of the items of `lists`; lists of lists and mixed lists are refused.
fn element_kind(lists: &[&[Value]]) -> Result<Kind> {
    let mut kind = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => {
                return Err(PatchError::Rejected {
                    cause: "lists of lists are not supported".into(),
                });
            }
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                let all = Value::Array(lists.iter().map(|l| Value::Array(l.to_vec())).collect());
                return Err(PatchError::Internal(format!(
                    "list element types are not identical: {}",
                    gofmt::value(&all)
                )));
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| PatchError::Internal("no elements in any of the given slices".into()))
}

/// Go's `==` on decoded JSON: numbers are float64s, so 80 and 80.0 are one value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `$prefix/<field>` → `<field>`.
fn extract_key<'a>(directive: &'a str, prefix: &str) -> Option<&'a str> {
    directive.split_once('/').filter(|(p, _)| *p == prefix).map(|(_, k)| k)
}

fn bad_primitive_list() -> PatchError {
    PatchError::BadRequest("invalid patch format of primitive list".into())
}

fn bad_retain_keys() -> PatchError {
    PatchError::BadRequest("invalid patch format of retainKeys".into())
}

fn bad_set_element_order() -> PatchError {
    PatchError::BadRequest("invalid patch format of setElementOrder list".into())
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::Internal(format!(
        "Unknown patch type: {} in map: {}",
        gofmt::value(directive),
        gofmt::value(&Value::Object(map.clone()))
    ))
}

fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::Internal(format!(
        "expected a {expected}, but received a {}",
        gofmt::type_name(actual)
    ))
}

fn no_merge_key(item: &Value, merge_key: &str) -> PatchError {
    PatchError::Internal(format!(
        "map: {} does not contain declared merge key: {merge_key}",
        gofmt::value(item)
    ))
}

#[cfg(test)]
mod tests;
