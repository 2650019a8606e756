//! `weft expose`: a Service for a Deployment, Pod or Service, made as `kubectl expose` makes it.

use crate::client::{Api, MANAGER, path, with_query};
use anyhow::{Context, Result, bail};
use http::Method;
use serde_json::{Map, Value, json};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// deployment/NAME, pod/NAME or service/NAME (or TYPE NAME).
    #[arg(required = true, num_args = 1..=2)]
    resource: Vec<String>,
    /// The Service's port (default: the container ports, or the exposed Service's ports).
    #[arg(long)]
    port: Option<i32>,
    /// The port (number or name) on the pods the Service sends to (default: the same as --port).
    #[arg(long)]
    target_port: Option<String>,
    /// TCP, UDP or SCTP (default: the container port's, else TCP).
    #[arg(long)]
    protocol: Option<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type")]
    service_type: Option<String>,
    /// The Service's name (default: the exposed object's).
    #[arg(long)]
    name: Option<String>,
    #[arg(short, long, default_value = "default")]
    namespace: String,
}

pub fn run(paths: &Paths, args: Args) -> Result<()> {
    let (word, name) = match args.resource.as_slice() {
        [one] => match one.split_once('/') {
            Some((kind, name)) => (kind.to_string(), name.to_string()),
            None => bail!("give TYPE/NAME (deployment/web) or TYPE NAME"),
        },
        [kind, name] => (kind.clone(), name.clone()),
        _ => bail!("give TYPE/NAME (deployment/web) or TYPE NAME"),
    };
    let api = Api::connect(paths)?;
    let resource = api.resource(&word)?;
    let kind = resource.kind.clone();
    if !matches!(kind.as_str(), "Deployment" | "Pod" | "Service") {
        bail!("cannot expose a {word:?}: weft exposes deployments, pods and services");
    }
    let object = crate::objects::get_one(&api, &resource, &args.namespace, &name)?;
    let service = service_for(&kind, &object, &args)?;
    let service_name = service["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let services = weft_model::kind::by_kind("Service").context("the Service resource")?;
    let uri = with_query(
        &path(services, Some(&args.namespace), None),
        &[("fieldManager", MANAGER)],
    );
    let answer = api.call(
        Method::POST,
        &uri,
        "application/json",
        "application/json",
        serde_json::to_vec(&service)?,
    )?;
    for warning in &answer.warnings {
        eprintln!("Warning: {warning}");
    }
    println!("service/{service_name} exposed");
    Ok(())
}

/// The Service `kubectl expose` would create for `object` (a Deployment, Pod or Service as JSON).
pub fn service_for(kind: &str, object: &Value, args: &Args) -> Result<Value> {
    let name = args
        .name
        .clone()
        .or_else(|| {
            object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .context("the object has no name")?;
    let selector = match kind {
        "Deployment" => {
            if object
                .pointer("/spec/selector/matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty())
            {
                bail!("cannot expose Deployment {name}: its selector has matchExpressions, which a Service cannot use");
            }
            object.pointer("/spec/selector/matchLabels").cloned()
        }
        "Pod" => object.pointer("/metadata/labels").cloned(),
        _ => object.pointer("/spec/selector").cloned(),
    }
    .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
    .with_context(|| format!("cannot expose {kind} {name}: it has no labels to select its pods by"))?;
    // (port, protocol, target port) of every port the Service gets.
    let found: Vec<(i64, String, Option<Value>)> = match args.port {
        Some(port) => vec![(i64::from(port), String::new(), None)],
        None if kind == "Service" => object
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
                Some((p["port"].as_i64()?, proto, p.get("targetPort").cloned()))
            })
            .collect(),
        None => {
            let containers = match kind {
                "Deployment" => object.pointer("/spec/template/spec/containers"),
                _ => object.pointer("/spec/containers"),
            };
            containers
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
                    Some((p["containerPort"].as_i64()?, proto, None))
                })
                .collect()
        }
    };
    if found.is_empty() {
        bail!("couldn't find a port for {kind} {name}: give --port");
    }
    let target = args
        .target_port
        .as_deref()
        .map(|t| t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n)));
    let several = found.len() > 1;
    let ports: Vec<Value> = found
        .into_iter()
        .enumerate()
        .map(|(i, (port, proto, target_of_service))| {
            let protocol = args
                .protocol
                .clone()
                .or_else(|| (!proto.is_empty()).then_some(proto))
                .unwrap_or_else(|| "TCP".into());
            let mut p = Map::new();
            if several {
                p.insert("name".into(), json!(format!("port-{}", i + 1)));
            }
            p.insert("port".into(), json!(port));
            p.insert("protocol".into(), json!(protocol));
            p.insert(
                "targetPort".into(),
                target.clone().or(target_of_service).unwrap_or(json!(port)),
            );
            Value::Object(p)
        })
        .collect();
    let mut metadata = json!({"name": name, "namespace": args.namespace});
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        metadata["labels"] = labels.clone();
    }
    let mut spec = json!({"ports": ports, "selector": selector});
    if let Some(t) = &args.service_type {
        spec["type"] = json!(t);
    }
    Ok(json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Cli::parse_from(std::iter::once("expose").chain(line.iter().copied())).args
    }

    #[test]
    fn deployments_are_selected_by_match_labels() {
        let d = json!({"metadata": {"name": "web", "labels": {"tier": "front"}}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}}});
        let svc = service_for(
            "Deployment",
            &d,
            &args(&["deployment/web", "--port", "8080", "--target-port", "80"]),
        )
        .unwrap();
        assert_eq!(
            svc,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 80}]}})
        );
        // No --port: the container ports.
        let svc = service_for(
            "Deployment",
            &d,
            &args(&["deployment/web", "--type", "NodePort", "--name", "w"]),
        )
        .unwrap();
        assert_eq!(svc["metadata"]["name"], "w");
        assert_eq!(svc["spec"]["type"], "NodePort");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 80}])
        );
    }

    #[test]
    fn pods_are_selected_by_their_labels() {
        let p = json!({"metadata": {"name": "dns", "labels": {"app": "dns"}}, "spec": {"containers": [{"name": "c",
            "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP"}]}]}});
        let svc = service_for("Pod", &p, &args(&["pod", "dns", "--target-port", "dns"])).unwrap();
        assert_eq!(svc["spec"]["selector"], json!({"app": "dns"}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "port-1", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                   {"name": "port-2", "port": 53, "protocol": "TCP", "targetPort": "dns"}])
        );
        let bare = json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}});
        let err = service_for("Pod", &bare, &args(&["pod/x", "--port", "80"])).unwrap_err();
        assert!(err.to_string().contains("no labels"), "{err}");
    }
}
