//! Discovery: which groups, versions and resources the server has, in the legacy form (`APIVersions`,
//! `APIGroupList`, one `APIResourceList` per group-version) and aggregated (`APIGroupDiscoveryList`, one
//! document for /api and one for /apis), the latter only when the client's Accept asks for it: kubectl 1.28 takes
//! v2beta1 only, and reads anything it did not ask for as legacy.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use weft_model::kind::Resource;

/// The aggregated version a request's Accept header asks for, best first.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    ["v2", "v2beta1"]
        .into_iter()
        .find(|v| accept.split(',').any(|t| t.contains("g=apidiscovery.k8s.io") && t.contains(&format!("v={v};"))))
}

/// The Content-Type of an aggregated answer.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// `/api` (core: true) or `/apis` in the aggregated form.
pub fn aggregated(resources: &[Resource], core: bool, version: &str) -> Value {
    let items: Vec<Value> = by_group(resources, core)
        .into_iter()
        .map(|(group, versions)| {
            json!({
                "metadata": {"name": group, "creationTimestamp": null},
                "versions": versions.into_iter().map(|(version, rs)| json!({
                    "version": version,
                    "freshness": "Current",
                    "resources": rs.iter().map(|r| aggregated_resource(r)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = r
            .subresources
            .iter()
            .map(|s| {
                let (group, version, kind, verbs) = subresource(r, s);
                json!({"subresource": s, "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": verbs})
            })
            .collect();
    }
    v
}

/// The kind a subresource answers with and its verbs, as the API server lists them.
fn subresource<'a>(r: &'a Resource, sub: &str) -> (&'a str, &'a str, &'a str, &'static [&'static str]) {
    let own = (r.group.as_str(), r.version.as_str());
    match sub {
        "status" => (own.0, own.1, &r.kind, &["get", "patch", "update"]),
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "log" => (own.0, own.1, "Pod", &["get"]),
        "exec" => (own.0, own.1, "PodExecOptions", &["create", "get"]),
        "attach" => (own.0, own.1, "PodAttachOptions", &["create", "get"]),
        "portforward" => (own.0, own.1, "PodPortForwardOptions", &["create", "get"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "binding" => (own.0, own.1, "Binding", &["create"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        "finalize" => (own.0, own.1, &r.kind, &["update"]),
        "proxy" => (own.0, own.1, "ProxyOptions", &["create", "delete", "get", "patch", "update"]),
        _ => (own.0, own.1, &r.kind, &["get"]),
    }
}

/// The resources of one version of a group.
type Version<'a> = (String, Vec<&'a Resource>);

/// Resources by group, then version (in the order first seen), core only or every other group.
fn by_group(resources: &[Resource], core: bool) -> Vec<(String, Vec<Version<'_>>)> {
    let mut groups: Vec<(String, Vec<Version<'_>>)> = Vec::new();
    for r in resources.iter().filter(|r| r.group.is_empty() == core) {
        let at = match groups.iter().position(|(g, _)| *g == r.group) {
            Some(i) => i,
            None => {
                groups.push((r.group.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let versions = &mut groups[at].1;
        match versions.iter_mut().find(|(v, _)| *v == r.version) {
            Some((_, rs)) => rs.push(r),
            None => versions.push((r.version.clone(), vec![r])),
        }
    }
    groups
}

/// `/api` in the legacy form.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis` in the legacy form.
pub fn group_list(resources: &[Resource]) -> Value {
    let groups: Vec<Value> = by_group(resources, false).iter().map(|(g, vs)| group(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/GROUP` in the legacy form, if the group exists.
pub fn api_group(resources: &[Resource], name: &str) -> Option<Value> {
    by_group(resources, false).iter().find(|(g, _)| g == name).map(|(g, vs)| {
        let mut v = group(g, vs);
        v["kind"] = json!("APIGroup");
        v["apiVersion"] = json!("v1");
        v
    })
}

fn group(name: &str, versions: &[Version<'_>]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(|(v, _)| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(&versions[0].0),
    })
}

/// `/api/v1` or `/apis/GROUP/VERSION`: the resources of one group-version with their subresources, if any.
pub fn resource_list(resources: &[Resource], group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Resource> = resources.iter().filter(|r| r.group == group && r.version == version).collect();
    if rs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in rs {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        list.push(v);
        for s in &r.subresources {
            let (g, ver, kind, verbs) = subresource(r, s);
            let mut v = json!({
                "name": format!("{}/{s}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if (g, ver) != (group, version) {
                v["group"] = json!(g);
                v["version"] = json!(ver);
            }
            list.push(v);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}))
}

/// Group-versions with their resources, for the OpenAPI index.
pub fn group_versions(resources: &[Resource]) -> BTreeMap<String, Vec<&Resource>> {
    let mut out: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for r in resources {
        let path = match r.group.as_str() {
            "" => format!("api/{}", r.version),
            g => format!("apis/{g}/{}", r.version),
        };
        out.entry(path).or_default().push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::kind::builtin;

    #[test]
    fn aggregated_only_when_asked_and_in_the_version_asked() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(old), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json, */*"), None);
    }

    #[test]
    fn core_and_groups_list_resources_with_subresources() {
        let rs = builtin();
        let core = aggregated(rs, true, "v2");
        let pods = &core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(pods["subresources"].as_array().unwrap().iter().any(|s| s["subresource"] == "exec"));
        let groups = aggregated(rs, false, "v2");
        assert!(groups["items"].as_array().unwrap().iter().any(|g| g["metadata"]["name"] == "apps"));
        let apps = resource_list(rs, "apps", "v1").unwrap();
        let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!((scale["group"].as_str(), scale["kind"].as_str()), (Some("autoscaling"), Some("Scale")));
        assert!(resource_list(rs, "apps", "v9").is_none());
        let list = group_list(rs);
        assert!(list["groups"].as_array().unwrap().iter().all(|g| g["name"] != ""));
        assert_eq!(api_group(rs, "apps").unwrap()["preferredVersion"]["groupVersion"], "apps/v1");
    }
}
