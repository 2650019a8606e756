//! What a request asks for: the route its path names, and its query parameters decoded.

use crate::status::ApiError;
use std::collections::BTreeMap;
use weft_model::Snapshot;
use weft_model::kind::Resource;

/// A path of the API.
#[derive(Debug, PartialEq)]
pub enum Route {
    Version,
    Health,
    /// `/api` (core) or `/apis`.
    Discovery {
        core: bool,
    },
    /// `/apis/GROUP`.
    Group(String),
    /// `/api/v1`, `/apis/GROUP/VERSION`.
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiIndex,
    OpenApiDocument(String),
    Object(Box<Target>),
}

/// A resource path: a collection (no name), an object, or one of its subresources.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Resolves `path` against the resources `snap` serves.
pub fn route(path: &str, snap: &Snapshot) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    Ok(match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::Discovery { core: true },
        ["apis"] => Route::Discovery { core: false },
        ["api", version] => Route::ResourceList {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", rest @ ..] => Route::OpenApiDocument(rest.join("/")),
        ["api", version, rest @ ..] => Route::Object(Box::new(target(snap, "", version, rest)?)),
        ["apis", group, version, rest @ ..] => Route::Object(Box::new(target(snap, group, version, rest)?)),
        _ => return Err(ApiError::no_route()),
    })
}

fn target(snap: &Snapshot, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    // `namespaces/NS/RESOURCE/...`, except `namespaces/NAME/status|finalize`, the namespace's own subresources.
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, more @ ..] if !(more.is_empty() && matches!(*plural, "status" | "finalize")) => {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    let resource = crate::registry::lookup(snap, group, version, plural).ok_or_else(ApiError::no_route)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::no_route());
    }
    if let Some(sub) = &subresource
        && !resource.subresources.contains(sub)
    {
        return Err(ApiError::no_route());
    }
    Ok(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

/// Query parameters, percent-decoded (`+` is a space, as Go's url.Values writes it).
pub fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Every value of a query parameter that may repeat, in order.
pub fn query_values(raw: &str, name: &str) -> Vec<String> {
    raw.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == name).then(|| decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_objects_and_subresources() {
        let snap = Snapshot::default();
        let Route::Object(t) = route("/api/v1/namespaces/default/pods/web-1/log", &snap).unwrap() else {
            panic!("not an object route")
        };
        assert_eq!(t.resource.kind, "Pod");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web-1"));
        assert_eq!(t.subresource.as_deref(), Some("log"));
        let Route::Object(t) = route("/api/v1/namespaces/kube-system", &snap).unwrap() else {
            panic!()
        };
        assert_eq!(
            (t.resource.kind.as_str(), t.name.as_deref()),
            ("Namespace", Some("kube-system"))
        );
        let Route::Object(t) = route("/api/v1/namespaces/x/status", &snap).unwrap() else {
            panic!()
        };
        assert_eq!(
            (t.name.as_deref(), t.subresource.as_deref()),
            (Some("x"), Some("status"))
        );
        let Route::Object(t) = route("/apis/apps/v1/deployments", &snap).unwrap() else {
            panic!()
        };
        assert_eq!((t.namespace, t.name), (None, None));
        assert_eq!(route("/apis/apps/v1/namespaces/a/nodes", &snap).unwrap_err().code, 404);
        assert_eq!(
            route("/api/v1/namespaces/a/pods/p/nothing", &snap).unwrap_err().code,
            404
        );
        assert_eq!(route("/api/v1/widgets", &snap).unwrap_err().code, 404);
        assert_eq!(route("/apis", &snap).unwrap(), Route::Discovery { core: false });
        assert_eq!(
            route("/openapi/v3/apis/apps/v1", &snap).unwrap(),
            Route::OpenApiDocument("apis/apps/v1".into())
        );
    }

    #[test]
    fn queries_are_decoded() {
        let q = query(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=500&watch"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a,b)");
        assert_eq!(q["limit"], "500");
        assert_eq!(q["watch"], "");
        assert_eq!(query(Some("x=%zz%4"))["x"], "%zz%4");
    }
}
