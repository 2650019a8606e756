//! `weft apply`, `get` and `delete`: kubectl's verbs against the lab's API.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use weft_apiserver::table::{self, IncludeObject, PrinterColumn};
use weft_lab::api::{ApplyReply, Client, Outcome, Request};
use weft_lab::spec::Paths;
use weft_model::Key;

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
    /// pods, deployments, nodes, namespaces, ... (kubectl's names and short names).
    kind: String,
    name: Option<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// wide, json, yaml, name or jsonpath=TEMPLATE (kubectl's subset: `{.a.b[0].c}`, `[*]`).
    #[arg(short, long)]
    output: Option<String>,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// KIND NAME... (or use -f).
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

pub fn apply(paths: &Paths, args: ApplyArgs) -> Result<()> {
    let values = read_manifests(&args.files)?;
    if values.is_empty() {
        bail!("no objects passed to apply");
    }
    apply_values(paths, values, &args.namespace)
}

pub fn apply_values(paths: &Paths, objects: Vec<Value>, namespace: &str) -> Result<()> {
    let reply = Client::connect(paths)?.call(&Request::Apply {
        objects,
        namespace: namespace.to_string(),
    })?;
    let reply: ApplyReply = serde_json::from_value(reply)?;
    for warning in &reply.warnings {
        eprintln!("Warning: {warning}");
    }
    print_outcomes(&reply.outcomes);
    Ok(())
}

fn print_outcomes(outcomes: &[Outcome]) {
    for o in outcomes {
        println!("{}/{} {}", o.key.kind.to_ascii_lowercase(), o.key.name, o.action);
    }
}

/// Objects of `kind`, in `namespace` or all.
pub fn list(paths: &Paths, kind: &str, namespace: Option<&str>) -> Result<Vec<Value>> {
    let value = Client::connect(paths)?.call(&Request::Get {
        kind: Some(kind.to_string()),
        namespace: namespace.map(str::to_string),
        name: None,
    })?;
    Ok(match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    })
}

/// One object by kind, namespace and name.
pub fn get_one(paths: &Paths, kind: &str, namespace: &str, name: &str) -> Result<Value> {
    let value = Client::connect(paths)?.call(&Request::Get {
        kind: Some(kind.to_string()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
    })?;
    match value {
        Value::Array(mut items) if !items.is_empty() => Ok(items.remove(0)),
        _ => bail!("{kind} {name:?} not found in namespace {namespace}"),
    }
}

/// The kind a user means, among known kinds and those in the store.
fn resolve_kind(paths: &Paths, word: &str) -> Result<String> {
    let stored: Vec<String> = serde_json::from_value(Client::connect(paths)?.call(&Request::Kinds)?)?;
    weft_model::kind::resolve(word, &stored)
        .with_context(|| format!("the server doesn't have a resource type {word:?}"))
}

pub fn get(paths: &Paths, args: GetArgs) -> Result<()> {
    let kind = resolve_kind(paths, &args.kind)?;
    let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
    let items: Vec<Value> = match &args.name {
        Some(name) => vec![get_one(paths, &kind, namespace.unwrap_or("default"), name)?],
        None => list(paths, &kind, namespace)?,
    };
    let doc = |items: Vec<Value>| {
        if args.name.is_some() {
            items.into_iter().next().unwrap_or(Value::Null)
        } else {
            json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
        }
    };
    match args.output.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&doc(items))?),
        Some("yaml") => print!("{}", serde_saphyr::to_string(&doc(items)).context("writing YAML")?),
        Some("name") => {
            for item in &items {
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                println!("{}/{name}", kind.to_ascii_lowercase());
            }
        }
        Some(o) if o.starts_with("jsonpath=") => {
            let template = &o["jsonpath=".len()..];
            print!(
                "{}",
                weft_apiserver::jsonpath::render(template, &doc(items)).map_err(anyhow::Error::msg)?
            );
        }
        Some("wide") | None => {
            if items.is_empty() {
                match namespace {
                    Some(ns) if weft_model::kind::namespaced(&kind) => {
                        eprintln!("No resources found in {ns} namespace.")
                    }
                    _ => eprintln!("No resources found"),
                }
                return Ok(());
            }
            let wide = args.output.is_some();
            let columns = printer_columns(paths, &kind, &items)?;
            let refs: Vec<&Value> = items.iter().collect();
            let table = table::table(
                &kind,
                &refs,
                IncludeObject::Metadata,
                columns.as_deref(),
                true,
                SystemTime::now(),
                json!({}),
            );
            let with_namespace = args.all_namespaces && weft_model::kind::namespaced(&kind);
            print!("{}", crate::table::render(&table, wide, with_namespace));
        }
        Some(other) => bail!("unknown output format {other:?} (expected wide, json, yaml, name or jsonpath=...)"),
    }
    Ok(())
}

/// The printer columns for `items` of `kind` when they are custom resources: their CRD's, if the lab stores one,
/// else none (Name and Age, as for a CRD that declares none: the lab keeps kinds it does not know without a CRD).
/// `None` for Kubernetes' own kinds, which have kubectl's printers.
fn printer_columns(paths: &Paths, kind: &str, items: &[Value]) -> Result<Option<Vec<PrinterColumn>>> {
    let api_version = items.first().and_then(|i| i["apiVersion"].as_str()).unwrap_or_default();
    let Some((group, version)) = api_version.split_once('/').filter(|(g, _)| g.contains('.')) else {
        return Ok(None);
    };
    let crd = list(paths, "CustomResourceDefinition", None)?.into_iter().find(|crd| {
        crd.pointer("/spec/group").and_then(Value::as_str) == Some(group)
            && crd.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind)
    });
    Ok(match crd {
        Some(crd) => Some(PrinterColumn::from_crd(&crd, version)),
        None if group.ends_with(".k8s.io") => None,
        None => Some(Vec::new()),
    })
}

pub fn delete(paths: &Paths, args: DeleteArgs) -> Result<()> {
    let mut keys = Vec::new();
    if !args.files.is_empty() {
        for value in read_manifests(&args.files)? {
            let mut object = weft_model::manifest::from_value(value).map_err(anyhow::Error::msg)?;
            object.default_namespace(&args.namespace);
            keys.push(object.key());
        }
    } else {
        let Some((kind, names)) = args.args.split_first() else {
            bail!("give KIND NAME... or -f FILE");
        };
        if names.is_empty() {
            bail!("give the name of the {kind} to delete");
        }
        let kind = resolve_kind(paths, kind)?;
        let ns = weft_model::kind::namespaced(&kind).then_some(args.namespace.as_str());
        keys.extend(names.iter().map(|n| Key::new(&kind, ns, n)));
    }
    let value = Client::connect(paths)?.call(&Request::Delete { keys: keys.clone() })?;
    let outcomes: Vec<Outcome> = serde_json::from_value(value)?;
    for o in &outcomes {
        println!("{} \"{}\" deleted", o.key.kind.to_ascii_lowercase(), o.key.name);
    }
    if args.wait {
        let deadline = Instant::now() + Duration::from_secs(60);
        crate::lab::wait_for(deadline, "deletion to finish", || {
            let mut client = Client::connect(paths)?;
            for key in &keys {
                let left = client.call(&Request::Get {
                    kind: Some(key.kind.clone()),
                    namespace: key.namespace.clone(),
                    name: Some(key.name.clone()),
                });
                if left.is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
    }
    Ok(())
}

/// Whether a pod (as JSON) is Running with its Ready condition true.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
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
    let mut objects = Vec::new();
    for kind in ["Pod", "Namespace", "Node", "Service", "EndpointSlice", "NetworkPolicy"] {
        for value in list(paths, kind, None)? {
            objects.push(weft_model::manifest::from_value(value).map_err(anyhow::Error::msg)?);
        }
    }
    Ok(weft_model::Snapshot::new(0, objects))
}
