//! `weft apply`, `get` and `delete`: kubectl's verbs as clients of the lab's Kubernetes API.

use crate::client::{self, Api, Call, MANAGER, ServerError, TABLE, path, with_query};
use anyhow::{Context, Result, bail};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};
use weft_lab::spec::Paths;
use weft_model::kind::Resource;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// File, directory (its .yaml/.yml/.json files) or - for stdin; may repeat.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// TYPE [NAME...] or TYPE/NAME... (kubectl's names and short names: pods, po, deploy, svc, ...; TYPE may
    /// list several: pods,svc).
    #[arg(required = true)]
    resources: Vec<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// wide, json, yaml, name or jsonpath=TEMPLATE (kubectl's subset: `{.a.b[0].c}`, `[*]`).
    #[arg(short, long)]
    output: Option<String>,
    /// Only objects whose labels match (`app=web`, `tier!=db`, `env in (a,b)`, `!legacy`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// After listing, print each change as it happens (until interrupted).
    #[arg(short, long)]
    watch: bool,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// TYPE NAME... or TYPE/NAME... (or use -f).
    args: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Return at once instead of waiting until the objects are gone.
    #[arg(long = "wait", default_value_t = true, action = clap::ArgAction::Set)]
    wait: bool,
}

/// Reads and validates every manifest; any error refuses them all.
pub fn read_manifests(files: &[String]) -> Result<Vec<Value>> {
    let mut values = Vec::new();
    for file in files {
        for (origin, text) in read_sources(file)? {
            let objects = weft_model::parse(&text, &origin)?;
            values.extend(objects.iter().map(weft_model::Object::to_value));
        }
    }
    Ok(values)
}

/// The texts behind one -f argument: stdin, a file, or a directory's manifest files in name order.
fn read_sources(file: &str) -> Result<Vec<(String, String)>> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        return Ok(vec![("-".into(), text)]);
    }
    let path = Path::new(file);
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {file}"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
            .collect();
        entries.sort();
        return entries
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                Ok((p.display().to_string(), text))
            })
            .collect();
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
    Ok(vec![(file.to_string(), text)])
}

/// The documents behind `files` as they are written (a `List`'s items each), for the server to validate.
pub fn read_documents(files: &[String]) -> Result<Vec<Value>> {
    let mut values = Vec::new();
    for file in files {
        for (origin, text) in read_sources(file)? {
            let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
                vec![serde_json::from_str(&text).with_context(|| format!("{origin}: invalid JSON"))?]
            } else {
                serde_saphyr::from_multiple(&text).with_context(|| format!("{origin}: invalid YAML"))?
            };
            for document in documents {
                match document {
                    Value::Null => {}
                    Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                        values.extend(
                            map.get("items")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .cloned(),
                        );
                    }
                    Value::Object(_) => values.push(document),
                    _ => bail!("{origin}: a document is not an object"),
                }
            }
        }
    }
    Ok(values)
}

pub fn apply(paths: &Paths, args: ApplyArgs) -> Result<()> {
    let documents = read_documents(&args.files)?;
    if documents.is_empty() {
        bail!("no objects passed to apply");
    }
    apply_values(&Api::connect(paths)?, documents, &args.namespace, Order::Input)
}

/// One object to apply: where it goes and what is sent.
struct Write {
    resource: Resource,
    namespace: Option<String>,
    name: String,
    body: Vec<u8>,
}

impl Write {
    fn uri(&self, dry_run: bool) -> String {
        let path = path(&self.resource, self.namespace.as_deref(), Some(&self.name));
        let dry = if dry_run { "All" } else { "" };
        let query = [
            ("fieldManager", MANAGER),
            ("fieldValidation", "Strict"),
            ("force", "true"),
            ("dryRun", dry),
        ];
        with_query(&path, &query)
    }

    fn call(&self, dry_run: bool) -> Call<'static> {
        Call {
            method: Method::PATCH,
            uri: self.uri(dry_run),
            content_type: APPLY_PATCH,
            accept: "application/json",
            body: self.body.clone(),
        }
    }
}

const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Server-side apply (`application/apply-patch+yaml`, field manager `weft`, forcing conflicts, as a user's own
/// apply should): every object of several is first checked by the server (`dryRun=All`, `fieldValidation=Strict`),
/// so a bad document applies nothing (the checks go at once); then they are written in `order`.
pub fn apply_values(api: &Api, documents: Vec<Value>, namespace: &str, order: Order) -> Result<()> {
    let mut writes = Vec::new();
    for mut doc in documents {
        let text = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        let (api_version, kind, name) = (text("/apiVersion"), text("/kind"), text("/metadata/name"));
        if kind.is_empty() || api_version.is_empty() {
            bail!("error validating data: apiVersion and kind must be set in every object");
        }
        if name.is_empty() {
            bail!("error validating data: a {kind} needs metadata.name to be applied");
        }
        let resource = api.resource_of(&api_version, &kind)?;
        let namespace = resource.namespaced.then(|| match text("/metadata/namespace") {
            ns if ns.is_empty() => namespace.to_string(),
            ns => ns,
        });
        if let (Some(ns), Some(meta)) = (&namespace, doc.get_mut("metadata").and_then(Value::as_object_mut)) {
            meta.insert("namespace".into(), json!(ns));
        }
        let body = serde_json::to_vec(&doc)?;
        writes.push(Write {
            resource,
            namespace,
            name,
            body,
        });
    }
    // Namespaces made by this input do not exist yet when the objects in them are checked.
    let new_namespaces: Vec<&str> = writes
        .iter()
        .filter(|w| w.resource.kind == "Namespace")
        .map(|w| w.name.as_str())
        .collect();
    // One object needs no separate check: its write is checked the same way. The checks go at once.
    if writes.len() > 1 {
        let checks = api.call_all(writes.iter().map(|w| w.call(true)).collect());
        for (w, checked) in writes.iter().zip(checks) {
            let Err(e) = checked else { continue };
            let pending = e.downcast_ref::<ServerError>().is_some_and(|s| {
                s.code == 404
                    && s.resource == "namespaces"
                    && w.namespace.as_deref().is_some_and(|ns| new_namespaces.contains(&ns))
            });
            if !pending {
                return Err(e);
            }
        }
    }
    if order == Order::Input {
        for w in &writes {
            write_at_once(api, &[w])?;
        }
        return Ok(());
    }
    // Written in two waves, each at once: first what the others need to exist (their Namespaces, the
    // definitions of custom kinds), then the rest; each wave's lines in the input's order. An object given more
    // than once is written once per round, in the input's order (two applies of one new object at once would
    // both try to create it).
    let first = |w: &&Write| matches!(w.resource.kind.as_str(), "Namespace" | "CustomResourceDefinition");
    let (early, late): (Vec<&Write>, Vec<&Write>) = writes.iter().partition(first);
    for wave in [early, late] {
        let mut rounds: Vec<Vec<&Write>> = Vec::new();
        let mut seen: HashMap<(&str, Option<&str>, &str), usize> = HashMap::new();
        for w in wave {
            let times = seen
                .entry((w.resource.kind.as_str(), w.namespace.as_deref(), w.name.as_str()))
                .or_default();
            if rounds.len() == *times {
                rounds.push(Vec::new());
            }
            rounds[*times].push(w);
            *times += 1;
        }
        for round in rounds {
            write_at_once(api, &round)?;
        }
    }
    Ok(())
}

/// In which order `apply_values` writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// One after the other, as the input lists them, as kubectl does: what the server allocates in turn (a
    /// ClusterIP, a node port) goes in the input's order.
    Input,
    /// As many at once as can be (see the waves above): for weft's own manifests, where the order of
    /// allocations does not matter and the time does.
    AtOnce,
}

/// Applies `writes` (no object twice) at once and prints what each did, as kubectl does.
fn write_at_once(api: &Api, writes: &[&Write]) -> Result<()> {
    let uris: Vec<String> = (writes.iter())
        .map(|w| path(&w.resource, w.namespace.as_deref(), Some(&w.name)))
        .collect();
    let befores = api.get_all_existing(uris);
    let answers = api.call_all(writes.iter().map(|w| w.call(false)).collect());
    for ((w, before), answer) in writes.iter().zip(befores).zip(answers) {
        let before = before?;
        let answer = answer?;
        for warning in &answer.warnings {
            eprintln!("Warning: {warning}");
        }
        let action = match (&before, answer.status) {
            (None, _) | (_, StatusCode::CREATED) => "created",
            (Some(b), _) if content(b) == content(&answer.body) => "unchanged",
            _ => "configured",
        };
        println!("{}/{} {action}", client::kind_name(&w.resource), w.name);
    }
    Ok(())
}

/// An object without what every write changes (resourceVersion, the managers' times), to tell whether a write
/// changed anything.
fn content(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    object
}

/// Whether the server answered 404.
pub fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>().is_some_and(|s| s.code == 404)
}

/// Objects of `kind` (a built-in kind), in `namespace` or all.
pub fn list(api: &Api, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>> {
    let resource = weft_model::kind::by_kind(kind).with_context(|| format!("no built-in kind {kind}"))?;
    let list = api.get(&path(resource, namespace, None), "application/json")?;
    Ok(items(list))
}

fn items(mut list: Value) -> Vec<Value> {
    match list.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

/// One object by resource, namespace and name.
pub fn get_one(api: &Api, resource: &Resource, namespace: &str, name: &str) -> Result<Value> {
    api.get(&path(resource, Some(namespace), Some(name)), "application/json")
}

/// What a verb's arguments name: `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`, each a resource and the names asked
/// for (none: all).
pub fn targets(api: &Api, args: &[String]) -> Result<Vec<(Resource, Vec<String>)>> {
    let Some((first, rest)) = args.split_first() else {
        bail!("give TYPE [NAME...] or TYPE/NAME");
    };
    if first.contains('/') {
        let mut out: Vec<(Resource, Vec<String>)> = Vec::new();
        for arg in args {
            let Some((word, name)) = arg.split_once('/').filter(|(w, n)| !w.is_empty() && !n.is_empty()) else {
                bail!(
                    "there is no need to give a resource type as a separate argument when passing TYPE/NAME: {arg:?}"
                );
            };
            let resource = api.resource(word)?;
            match out.iter_mut().find(|(r, _)| *r == resource) {
                Some((_, names)) => names.push(name.to_string()),
                None => out.push((resource, vec![name.to_string()])),
            }
        }
        return Ok(out);
    }
    let resources: Vec<Resource> = first.split(',').map(|w| api.resource(w)).collect::<Result<_>>()?;
    if resources.len() > 1 && !rest.is_empty() {
        bail!("give names with one resource type only, or use TYPE/NAME");
    }
    Ok(resources.into_iter().map(|r| (r, rest.to_vec())).collect())
}

pub fn get(paths: &Paths, args: GetArgs) -> Result<()> {
    let api = Api::connect(paths)?;
    let targets = targets(&api, &args.resources)?;
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let selector = args.selector.as_deref().unwrap_or_default();
    let single = targets.len() == 1 && targets[0].1.len() == 1;
    match args.output.as_deref() {
        Some("wide") | None => {
            let wide = args.output.is_some();
            for (i, (resource, names)) in targets.iter().enumerate() {
                let table = fetch_table(&api, resource, namespace, names, selector)?;
                let rows = table["rows"].as_array().map_or(0, Vec::len);
                let with_namespace = args.all_namespaces && resource.namespaced;
                if rows > 0 {
                    if i > 0 {
                        println!();
                    }
                    print!("{}", crate::table::render(&table, wide, with_namespace));
                } else if targets.len() == 1 && !args.watch {
                    match namespace {
                        Some(ns) if resource.namespaced => eprintln!("No resources found in {ns} namespace."),
                        _ => eprintln!("No resources found"),
                    }
                }
                if args.watch {
                    let version = table
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("0");
                    watch(&api, resource, namespace, names, selector, version, |event| {
                        let text = crate::table::render(&event["object"], wide, with_namespace);
                        print!("{}", text.split_once('\n').map_or("", |(_, rows)| rows));
                    })?;
                }
            }
            return Ok(());
        }
        _ => {}
    }
    let mut objects = Vec::new();
    for (resource, names) in &targets {
        let fill = |mut o: Value| {
            if let Some(map) = o.as_object_mut() {
                map.entry("apiVersion").or_insert_with(|| json!(resource.api_version()));
                map.entry("kind").or_insert_with(|| json!(resource.kind));
            }
            o
        };
        if names.is_empty() {
            let uri = with_query(&path(resource, namespace, None), &[("labelSelector", selector)]);
            objects.extend(items(api.get(&uri, "application/json")?).into_iter().map(fill));
        } else {
            for name in names {
                let object = api.get(&path(resource, Some(&args.namespace), Some(name)), "application/json")?;
                objects.push(fill(object));
            }
        }
    }
    let doc = || match (single, objects.first()) {
        (true, Some(one)) => one.clone(),
        _ => json!({"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}}),
    };
    match args.output.as_deref().unwrap_or_default() {
        "json" => println!("{}", serde_json::to_string_pretty(&doc())?),
        "yaml" => print!("{}", serde_saphyr::to_string(&doc()).context("writing YAML")?),
        "name" => {
            for object in &objects {
                let kind = object["kind"].as_str().unwrap_or_default();
                let group = object["apiVersion"]
                    .as_str()
                    .and_then(|v| v.split_once('/'))
                    .map(|(g, _)| g);
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match group {
                    Some(g) => println!("{}.{g}/{name}", kind.to_ascii_lowercase()),
                    None => println!("{}/{name}", kind.to_ascii_lowercase()),
                }
            }
        }
        o if o.starts_with("jsonpath=") => {
            let template = &o["jsonpath=".len()..];
            print!(
                "{}",
                weft_apiserver::jsonpath::render(template, &doc()).map_err(anyhow::Error::msg)?
            );
        }
        other => bail!("unknown output format {other:?} (expected wide, json, yaml, name or jsonpath=...)"),
    }
    Ok(())
}

/// The server's Table of `names` of `resource` (all, matching `selector`, when none), their rows in one table.
fn fetch_table(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    names: &[String],
    selector: &str,
) -> Result<Value> {
    if names.is_empty() {
        let uri = with_query(&path(resource, namespace, None), &[("labelSelector", selector)]);
        return api.get(&uri, TABLE);
    }
    let mut table = Value::Null;
    for name in names {
        let one = api.get(&path(resource, Some(namespace.unwrap_or("default")), Some(name)), TABLE)?;
        match table["rows"].as_array_mut() {
            Some(rows) => rows.extend(one["rows"].as_array().cloned().unwrap_or_default()),
            None => table = one,
        }
    }
    Ok(table)
}

/// Follows changes of `resource` from `version`, calling `each` with every event (as Tables), until the server
/// ends the watch.
fn watch(
    api: &Api,
    resource: &Resource,
    namespace: Option<&str>,
    names: &[String],
    selector: &str,
    version: &str,
    mut each: impl FnMut(&Value),
) -> Result<()> {
    let field = match names {
        [one] => format!("metadata.name={one}"),
        [] => String::new(),
        _ => bail!(
            "watch is only supported on individual resources and resource collections, but {} resources were found",
            names.len()
        ),
    };
    let query = [
        ("watch", "true"),
        ("resourceVersion", version),
        ("labelSelector", selector),
        ("fieldSelector", &field),
    ];
    let uri = with_query(&path(resource, namespace, None), &query);
    api.stream(&uri, TABLE, |line| {
        if !line.trim().is_empty() {
            let event: Value = serde_json::from_str(line).context("a watch event is not JSON")?;
            each(&event);
            use std::io::Write;
            std::io::stdout().flush().context("writing to stdout")?;
        }
        Ok(true)
    })
}

pub fn delete(paths: &Paths, args: DeleteArgs) -> Result<()> {
    let api = Api::connect(paths)?;
    // (resource, namespace, name) of each object.
    let mut doomed: Vec<(Resource, Option<String>, String)> = Vec::new();
    if !args.files.is_empty() {
        for doc in read_documents(&args.files)? {
            let text = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
            let resource = api.resource_of(&text("/apiVersion"), &text("/kind"))?;
            let namespace = match text("/metadata/namespace") {
                ns if ns.is_empty() => args.namespace.clone(),
                ns => ns,
            };
            let namespace = resource.namespaced.then_some(namespace);
            doomed.push((resource, namespace, text("/metadata/name")));
        }
    } else {
        for (resource, names) in targets(&api, &args.args)? {
            if names.is_empty() {
                bail!("resource(s) were provided, but no name was specified");
            }
            let namespace = resource.namespaced.then(|| args.namespace.clone());
            doomed.extend(names.into_iter().map(|n| (resource.clone(), namespace.clone(), n)));
        }
    }
    let options = serde_json::to_vec(&json!({"propagationPolicy": "Background"}))?;
    for (resource, namespace, name) in &doomed {
        let uri = path(resource, namespace.as_deref(), Some(name));
        api.call(
            Method::DELETE,
            &uri,
            "application/json",
            "application/json",
            options.clone(),
        )?;
        println!("{} \"{name}\" deleted", client::kind_name(resource));
    }
    if args.wait {
        let deadline = Instant::now() + Duration::from_secs(60);
        crate::lab::wait_for(deadline, "deletion to finish", || {
            for (resource, namespace, name) in &doomed {
                match api.get(&path(resource, namespace.as_deref(), Some(name)), "application/json") {
                    Ok(_) => return Ok(None),
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Some(()))
        })?;
    }
    Ok(())
}

/// Whether a pod or a node (as JSON) has its Ready condition true.
pub fn ready(object: &Value) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Whether a Deployment (as JSON) has seen its latest spec and has every replica ready.
pub fn deployment_complete(d: &Value) -> bool {
    let want = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = d.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0);
    let active = d.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0);
    let seen = d.pointer("/status/observedGeneration") == d.pointer("/metadata/generation");
    seen && ready == want && active == want
}

/// The lab's objects as one snapshot.
pub fn snapshot(paths: &Paths) -> Result<weft_model::Snapshot> {
    let api = Api::connect(paths)?;
    let mut objects = Vec::new();
    for kind in ["Pod", "Namespace", "Node", "Service", "EndpointSlice", "NetworkPolicy"] {
        for value in list(&api, kind, None)? {
            objects.push(weft_model::manifest::from_value(value).map_err(anyhow::Error::msg)?);
        }
    }
    Ok(weft_model::Snapshot::new(0, objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_as_written_with_lists_flattened() {
        let dir = std::env::temp_dir().join(format!("weft-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {bogus: 1}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        std::fs::write(dir.join("1.yaml"), yaml).unwrap();
        std::fs::write(
            dir.join("2.json"),
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
        let docs = read_documents(&[dir.display().to_string()]).unwrap();
        let names: Vec<&str> = docs
            .iter()
            .filter_map(|d| d.pointer("/metadata/name")?.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        // Unknown fields are left for the server to judge.
        assert_eq!(docs[0]["spec"]["bogus"], 1);
        std::fs::write(dir.join("3.yaml"), "- just\n- a list\n").unwrap();
        assert!(read_documents(&[dir.display().to_string()]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
