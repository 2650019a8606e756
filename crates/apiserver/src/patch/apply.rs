//! Server-side apply and the field ownership every write records in `metadata.managedFields`, after
//! structured-merge-diff: the applied configuration is merged into the live object with the per-field list shapes
//! (keyed lists item by item, sets value by value, atomic lists and maps whole); the applier owns exactly what it
//! applied; fields it applied before and no longer applies go unless another manager owns them; changing a field
//! another manager owns is a conflict unless forced, which moves the ownership.

use super::PatchError;
use super::fields::{self, FieldSet};
use super::schema::{self, Shape};
use serde_json::{Map, Value};

/// One `Status.details.causes` entry of an apply conflict (type `FieldManagerConflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// e.g. `conflict with "kubectl-client-side-apply" using apps/v1`
    pub message: String,
    /// e.g. `.spec.replicas`
    pub field: String,
}

/// Metadata the apiserver sets itself; field ownership never covers them.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// Decodes an `application/apply-patch+yaml` body (YAML or JSON) into the applied configuration.
pub fn parse_apply_body(body: &[u8]) -> Result<Value, PatchError> {
    let decoded: Value =
        serde_saphyr::from_slice(body).map_err(|e| PatchError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !decoded.is_object() {
        return Err(PatchError::BadRequest(
            "error decoding YAML: the configuration is not an object".into(),
        ));
    }
    Ok(decoded)
}

/// kubectl's client-side apply record; server-side apply by `kubectl` reads and updates it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Applies configuration `applied` (see [`parse_apply_body`]) for field manager `manager` to `current`, an object
/// of kind `kind` in `group` (None: the apply creates it), and returns the object with its `managedFields`.
/// `now` is the RFC 3339 time recorded for the manager.
///
/// As in the apiserver, the manager `kubectl` upgrades objects from client-side apply: conflicts on fields its
/// last-applied-configuration annotation set to their live values are taken over, and an annotation present on
/// the object is rewritten to the new configuration.
pub fn server_side_apply(
    group: &str,
    kind: &str,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, PatchError> {
    let Value::Object(applied) = applied else {
        return Err(PatchError::BadRequest(
            "error decoding YAML: the configuration is not an object".into(),
        ));
    };
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(PatchError::BadRequest("metadata.managedFields must be nil".into()));
    }
    let ty = schema::root_type(group, kind).unwrap_or_default();
    let applied = without_nulls(Value::Object(applied.clone()));
    let live = current.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut merged = match apply(ty, &live, &applied, manager, force, now) {
        Err(conflicts) if manager == "kubectl" => {
            let allowed = allowed_by_last_applied(&live, ty);
            let left: Vec<(String, String)> = conflicts
                .into_iter()
                .filter(|(_, path)| !allowed.contains(path))
                .collect();
            if !left.is_empty() {
                return Err(conflict_error(left));
            }
            apply(ty, &live, &applied, manager, true, now).map_err(conflict_error)?
        }
        result => result.map_err(conflict_error)?,
    };
    if manager == "kubectl" && last_applied(&merged).is_some() {
        let mut config = applied;
        if let Some(annotations) = config
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(LAST_APPLIED);
            if annotations.is_empty()
                && let Some(meta) = config["metadata"].as_object_mut()
            {
                meta.remove("annotations");
            }
        }
        if let Some(annotations) = merged
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.insert(LAST_APPLIED.into(), config.to_string().into());
        }
    }
    Ok(merged)
}

/// One apply; Err holds the conflicts as (manager as printed, path as printed).
fn apply(
    ty: &'static str,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<(String, String)>> {
    let mut entries = Entries::read(live);
    let mut merged = live.clone();
    merge(&mut merged, applied, ty, Shape::Struct);
    let applied_set = owned_fields(applied, ty);

    let me = Identity {
        manager: manager.into(),
        operation: "Apply",
        api_version: None,
    };
    let mut conflicts = Vec::new();
    for path in applied_set.members() {
        if !changed(live, &merged, &path, &applied_set) {
            continue;
        }
        for entry in entries.0.iter_mut().filter(|e| e.identity != me) {
            if entry.fields.contains(&path) {
                if force {
                    entry.fields.remove(&path);
                } else {
                    conflicts.push((entry.identity.printed(), fields::path_string(&path)));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    let previous = entries.find(&me).map(|e| e.fields.clone()).unwrap_or_default();
    let mut others = FieldSet::default();
    for entry in entries.0.iter().filter(|e| e.identity != me) {
        others.union(&entry.fields);
    }
    let dropped = previous.difference(&applied_set).difference(&others);
    remove_fields(&mut merged, &dropped);

    let api_version = api_version(&merged);
    entries.set(me, applied_set, api_version, now);
    entries.write(&mut merged);
    Ok(merged)
}

fn last_applied(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The paths (as printed) the live object's last-applied-configuration set to the values they still have.
fn allowed_by_last_applied(live: &Value, ty: &'static str) -> Vec<String> {
    let Some(last) = last_applied(live).and_then(|text| serde_json::from_str::<Value>(text).ok()) else {
        return Vec::new();
    };
    if last.get("apiVersion") != live.get("apiVersion") {
        return Vec::new();
    }
    let set = owned_fields(&last, ty);
    set.members()
        .into_iter()
        .filter(|p| !changed(&last, live, p, &set))
        .map(|p| fields::path_string(&p))
        .collect()
}

/// Records the field ownership of a write that is not an apply (create, update, patch) by `manager` in
/// `new`'s `metadata.managedFields`: `manager` (operation Update) takes the fields the write set or changed from
/// every other manager, and fields the write removed leave every manager. `old` is None for a create.
pub fn record_update(group: &str, kind: &str, old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    let ty = schema::root_type(group, kind).unwrap_or_default();
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    // A write that sets managedFields itself (e.g. to [] to reset them) decides them; otherwise they carry over.
    let sent = new.get("metadata").and_then(|m| m.get("managedFields"));
    let mut entries = match sent {
        Some(f) if Some(f) != old.get("metadata").and_then(|m| m.get("managedFields")) => Entries::read(new),
        _ => Entries::read(old),
    };
    let new_set = owned_fields(new, ty);
    let old_set = owned_fields(old, ty);
    let mut taken = FieldSet::default();
    for path in new_set.members() {
        if changed(old, new, &path, &new_set) {
            taken.insert(&path);
        }
    }
    let removed = old_set.difference(&new_set);
    let api_version = api_version(new);
    let me = Identity {
        manager: manager.into(),
        operation: "Update",
        api_version: Some(api_version.clone()),
    };
    for entry in entries.0.iter_mut() {
        entry.fields = entry.fields.difference(&removed);
        if entry.identity != me {
            entry.fields = entry.fields.difference(&taken);
        }
    }
    if !taken.is_empty() {
        let mut mine = entries.find(&me).map(|e| e.fields.clone()).unwrap_or_default();
        mine.union(&taken);
        entries.set(me, mine, api_version, now);
    }
    entries.write(new);
}

/// The fields a configuration sets, as its manager comes to own them.
fn owned_fields(object: &Value, ty: &'static str) -> FieldSet {
    let mut set = FieldSet::default();
    let Value::Object(map) = object else { return set };
    for (k, v) in map {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let field = schema::field(ty, k);
        if k == "metadata" {
            let meta: Map<String, Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !SERVER_METADATA.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !meta.is_empty() {
                collect(&Value::Object(meta), field, set.child(format!("f:{k}")));
            }
        } else {
            collect(v, field, set.child(format!("f:{k}")));
        }
    }
    set
}

/// Adds the fields of value `v` of field `field` below `node`.
fn collect(v: &Value, field: &schema::Field, node: &mut FieldSet) {
    match (v, field.shape) {
        (Value::Object(map), Shape::Struct) if !map.is_empty() => {
            for (k, child) in map {
                collect(child, schema::field(field.ty, k), node.child(format!("f:{k}")));
            }
        }
        (Value::Array(items), Shape::Keyed(keys)) if !items.is_empty() => {
            for item in items {
                let item_node = node.child(fields::key_element(item, keys));
                item_node.mark();
                if let Value::Object(map) = item {
                    for (k, child) in map {
                        collect(child, schema::field(field.ty, k), item_node.child(format!("f:{k}")));
                    }
                }
            }
        }
        (Value::Array(items), Shape::Set) if !items.is_empty() => {
            for item in items {
                node.child(fields::value_element(item)).mark();
            }
        }
        _ => node.mark(),
    }
}

/// Whether the member at `path` differs between `before` and `after`: its value for a field with nothing owned
/// below it, its presence for a list item, a set value or a map owned together with its fields.
fn changed(before: &Value, after: &Value, path: &[String], set: &FieldSet) -> bool {
    let (b, a) = (lookup(before, path), lookup(after, path));
    let by_value = path.last().is_some_and(|e| e.starts_with("f:")) && !set.has_children(path);
    if by_value { b != a } else { b.is_some() != a.is_some() }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((head, rest)) = path.split_first() else {
        return Some(v);
    };
    let next = if let Some(name) = head.strip_prefix("f:") {
        v.as_object()?.get(name)?
    } else {
        v.as_array()?.iter().find(|item| matches_element(item, head))?
    };
    lookup(next, rest)
}

/// Whether list item `item` is the one path element `element` (`k:` or `v:`) names.
fn matches_element(item: &Value, element: &str) -> bool {
    if let Some(key) = element.strip_prefix("k:") {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
            return false;
        };
        let names: Vec<&str> = key.keys().map(String::as_str).collect();
        fields::key_element(item, &names) == element
    } else if let Some(value) = element.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|v| &v == item)
    } else {
        false
    }
}

/// Merges applied configuration `applied` into `live` (a value of a field of shape `shape`, type `ty`).
fn merge(live: &mut Value, applied: &Value, ty: &'static str, shape: Shape) {
    match (live, applied, shape) {
        (Value::Object(live), Value::Object(applied), Shape::Struct) => {
            for (k, v) in applied {
                let field = schema::field(ty, k);
                match live.get_mut(k) {
                    Some(existing) => merge(existing, v, field.ty, field.shape),
                    None => {
                        live.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied), Shape::Keyed(keys)) => {
            let element = |v: &Value| fields::key_element(v, keys);
            *live = merge_items(std::mem::take(live), applied, element, |l, a| {
                merge(l, a, ty, Shape::Struct)
            });
        }
        (Value::Array(live), Value::Array(applied), Shape::Set) => {
            *live = merge_items(std::mem::take(live), applied, fields::value_element, |_, _| {});
        }
        (live, applied, _) => *live = applied.clone(),
    }
}

/// Merges the items of an applied keyed list or set into the live ones, ordered as structured-merge-diff orders
/// them: live-only items stay where they were, applied items come in the applied order, and an item both have
/// is merged where the applied order puts it.
fn merge_items(
    live: Vec<Value>,
    applied: &[Value],
    element: impl Fn(&Value) -> String,
    merge_item: impl Fn(&mut Value, &Value),
) -> Vec<Value> {
    let lhs: Vec<String> = live.iter().map(&element).collect();
    let rhs: Vec<String> = applied.iter().map(&element).collect();
    let mut shared = rhs.iter().filter(|pe| lhs.contains(pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: Vec<&String> = Vec::new();
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let take_merged = |pe: &String, applied_item: &Value| {
        let mut item = lhs
            .iter()
            .position(|l| l == pe)
            .map_or_else(|| applied_item.clone(), |i| live[i].clone());
        merge_item(&mut item, applied_item);
        item
    };
    let (mut l, mut r) = (0, 0);
    while l < lhs.len() || r < rhs.len() {
        if l < lhs.len() && r < rhs.len() {
            if lhs[l] == rhs[r] {
                out.push(take_merged(&rhs[r], &applied[r]));
                merged_rhs.push(&rhs[r]);
                (l, r) = (l + 1, r + 1);
                next_shared = shared.next();
                continue;
            }
            if rhs.contains(&lhs[l]) && next_shared.is_some_and(|s| *s != lhs[l]) {
                // A shared item the applied order wants later.
                l += 1;
                continue;
            }
        }
        if l < lhs.len() {
            if !rhs.contains(&lhs[l]) {
                out.push(live[l].clone());
                l += 1;
                continue;
            }
            if merged_rhs.contains(&&lhs[l]) {
                l += 1;
                continue;
            }
        }
        if r < rhs.len() {
            out.push(take_merged(&rhs[r], &applied[r]));
            merged_rhs.push(&rhs[r]);
            if next_shared == Some(&rhs[r]) {
                next_shared = shared.next();
            }
            r += 1;
        } else {
            // Only a live item the applied list has but that was never merged is left (a duplicate): skip it.
            l += 1;
        }
    }
    out
}

/// Removes the members of `set` from `v`: a member field, list item or set value goes with all below it.
fn remove_fields(v: &mut Value, set: &FieldSet) {
    for path in set.members() {
        remove_path(v, &path);
    }
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else { return };
    if let Some(name) = head.strip_prefix("f:") {
        let Some(map) = v.as_object_mut() else { return };
        if rest.is_empty() {
            map.remove(name);
        } else if let Some(child) = map.get_mut(name) {
            remove_path(child, rest);
        }
    } else if let Some(items) = v.as_array_mut() {
        if rest.is_empty() {
            items.retain(|item| !matches_element(item, head));
        } else if let Some(item) = items.iter_mut().find(|item| matches_element(item, head)) {
            remove_path(item, rest);
        }
    }
}

/// Drops null fields: an applied `null` sets nothing.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn api_version(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn conflict_error(conflicts: Vec<(String, String)>) -> PatchError {
    let causes: Vec<Conflict> = conflicts
        .iter()
        .map(|(manager, field)| Conflict {
            message: format!("conflict with {manager}"),
            field: field.clone(),
        })
        .collect();
    let message = if let [c] = causes.as_slice() {
        format!("Apply failed with 1 conflict: {}: {}", c.message, c.field)
    } else {
        let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for manager in managers {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(
                conflicts
                    .iter()
                    .filter(|(m, _)| m == manager)
                    .map(|(_, field)| format!("- {field}")),
            );
        }
        format!("Apply failed with {} conflicts: {}", causes.len(), lines.join("\n"))
    };
    PatchError::Conflict {
        message,
        conflicts: causes,
    }
}

/// Who owns a field set: a manager and operation, with the API version for Update (Apply entries are one per
/// manager whatever the version).
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    manager: String,
    operation: &'static str,
    api_version: Option<String>,
}

impl Identity {
    /// As the apiserver names a manager in conflicts.
    fn printed(&self) -> String {
        match &self.api_version {
            Some(version) => format!("{:?} using {version}", self.manager),
            None => format!("{:?}", self.manager),
        }
    }
}

struct Entry {
    identity: Identity,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

struct Entries(Vec<Entry>);

impl Entries {
    /// The entries of `object`'s managedFields; malformed ones are dropped.
    fn read(object: &Value) -> Entries {
        let list = object
            .get("metadata")
            .and_then(|m| m.get("managedFields"))
            .and_then(Value::as_array);
        let entries = list
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let manager = e.get("manager")?.as_str()?.to_owned();
                let api_version = e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let operation = match e.get("operation")?.as_str()? {
                    "Apply" => "Apply",
                    "Update" => "Update",
                    _ => return None,
                };
                let identity = Identity {
                    manager,
                    operation,
                    api_version: (operation == "Update").then(|| api_version.clone()),
                };
                Some(Entry {
                    identity,
                    api_version,
                    time: e.get("time").and_then(Value::as_str).map(str::to_owned),
                    subresource: e.get("subresource").and_then(Value::as_str).map(str::to_owned),
                    fields: FieldSet::from_json(e.get("fieldsV1").unwrap_or(&Value::Null)),
                })
            })
            .collect();
        Entries(entries)
    }

    fn find(&self, identity: &Identity) -> Option<&Entry> {
        self.0
            .iter()
            .find(|e| e.subresource.is_none() && &e.identity == identity)
    }

    fn set(&mut self, identity: Identity, fields: FieldSet, api_version: String, now: &str) {
        match self
            .0
            .iter_mut()
            .find(|e| e.subresource.is_none() && e.identity == identity)
        {
            Some(e) => {
                e.fields = fields;
                e.api_version = api_version;
                e.time = Some(now.to_owned());
            }
            None => self.0.push(Entry {
                identity,
                api_version,
                time: Some(now.to_owned()),
                subresource: None,
                fields,
            }),
        }
    }

    /// Writes the non-empty entries, sorted as the apiserver sorts them (operation, time, manager).
    fn write(mut self, object: &mut Value) {
        self.0.retain(|e| !e.fields.is_empty());
        self.0.sort_by(|a, b| {
            (a.identity.operation, &a.time, &a.identity.manager, &a.api_version).cmp(&(
                b.identity.operation,
                &b.time,
                &b.identity.manager,
                &b.api_version,
            ))
        });
        let list: Vec<Value> = self
            .0
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), e.identity.manager.into());
                m.insert("operation".into(), e.identity.operation.into());
                m.insert("apiVersion".into(), e.api_version.into());
                if let Some(t) = e.time {
                    m.insert("time".into(), t.into());
                }
                m.insert("fieldsType".into(), "FieldsV1".into());
                m.insert("fieldsV1".into(), e.fields.to_json());
                if let Some(s) = e.subresource {
                    m.insert("subresource".into(), s.into());
                }
                Value::Object(m)
            })
            .collect();
        let Some(object) = object.as_object_mut() else { return };
        let meta = object.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            if list.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), Value::Array(list));
            }
        }
    }
}

#[cfg(test)]
mod tests;
