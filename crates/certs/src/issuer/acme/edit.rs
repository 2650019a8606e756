//! `http01.ingress.name`: the challenge's path added to an existing Ingress and taken out again, as cert-manager
//! edits it in place. The path goes first in the host's rule (a rule is added when the Ingress has none for the
//! host); an existing path of the same token is replaced. Cleaning up removes only that path, and the rule too
//! when it was left with no path (an Ingress rule may not have an empty path list). Both are read-modify-write
//! with the object's resourceVersion, retried when another writer got there first.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    ServiceBackendPort,
};
use kube::Api;
use kube::api::PostParams;
use weft_model::k8s_openapi;

/// Writes that lost to another writer before this one gives up.
const CONFLICT_RETRIES: usize = 5;

/// The token's path, Exact, to the solver Service.
pub fn challenge_path(token: &str, service: &str, port: u16) -> HTTPIngressPath {
    HTTPIngressPath {
        path: Some(path_of(token)),
        path_type: "Exact".into(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: service.into(),
                port: Some(ServiceBackendPort {
                    number: Some(port.into()),
                    name: None,
                }),
            }),
            resource: None,
        },
    }
}

fn path_of(token: &str) -> String {
    format!("/.well-known/acme-challenge/{token}")
}

/// Adds `path` for `host` to the Ingress `name`.
pub async fn add_path(api: &Api<Ingress>, name: &str, host: &str, path: HTTPIngressPath) -> Result<(), kube::Error> {
    update(api, name, |ingress| with_path(ingress, host, path.clone())).await
}

/// Removes the token's path for `host` from the Ingress `name` (nothing to do when it or the path is gone).
pub async fn remove_path(api: &Api<Ingress>, name: &str, host: &str, token: &str) -> Result<(), kube::Error> {
    match update(api, name, |ingress| without_path(ingress, host, &path_of(token))).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

/// Applies `change` to the current Ingress and replaces it when it changed, again on a conflict.
async fn update(api: &Api<Ingress>, name: &str, change: impl Fn(&mut Ingress) -> bool) -> Result<(), kube::Error> {
    let mut attempt = 0;
    loop {
        let mut ingress = api.get(name).await?;
        if !change(&mut ingress) {
            return Ok(());
        }
        match api.replace(name, &PostParams::default(), &ingress).await {
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < CONFLICT_RETRIES => attempt += 1,
            other => return other.map(|_| ()),
        }
    }
}

/// The Ingress with `path` first in `host`'s rule; whether that changed it.
fn with_path(ingress: &mut Ingress, host: &str, path: HTTPIngressPath) -> bool {
    let rules = ingress.spec.get_or_insert_default().rules.get_or_insert_default();
    let Some(rule) = rules.iter_mut().find(|r| r.host.as_deref() == Some(host)) else {
        rules.push(IngressRule {
            host: Some(host.into()),
            http: Some(HTTPIngressRuleValue { paths: vec![path] }),
        });
        return true;
    };
    let paths = &mut rule
        .http
        .get_or_insert_with(|| HTTPIngressRuleValue { paths: Vec::new() })
        .paths;
    match paths.iter_mut().find(|p| p.path == path.path) {
        Some(existing) if *existing == path => false,
        Some(existing) => {
            *existing = path;
            true
        }
        None => {
            paths.insert(0, path);
            true
        }
    }
}

/// The Ingress without the path `path` in `host`'s rule (and without the rule if that was its only path);
/// whether that changed it.
fn without_path(ingress: &mut Ingress, host: &str, path: &str) -> bool {
    let Some(rules) = ingress.spec.as_mut().and_then(|s| s.rules.as_mut()) else {
        return false;
    };
    let Some(index) = rules.iter().position(|r| r.host.as_deref() == Some(host)) else {
        return false;
    };
    let Some(http) = rules[index].http.as_mut() else {
        return false;
    };
    let before = http.paths.len();
    http.paths.retain(|p| p.path.as_deref() != Some(path));
    if http.paths.len() == before {
        return false;
    }
    if http.paths.is_empty() {
        rules.remove(index);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(yaml: serde_json::Value) -> Ingress {
        serde_json::from_value(yaml).unwrap()
    }

    fn web() -> Ingress {
        ingress(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"rules": [
                {"host": "a.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"number": 80}}}},
                ]}},
                {"host": "b.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "b", "port": {"number": 80}}}},
                ]}},
            ]},
        }))
    }

    fn paths(ingress: &Ingress, host: &str) -> Vec<String> {
        let rules = ingress.spec.as_ref().and_then(|s| s.rules.clone()).unwrap_or_default();
        rules
            .iter()
            .filter(|r| r.host.as_deref() == Some(host))
            .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
            .map(|p| {
                format!(
                    "{} {}",
                    p.path.clone().unwrap_or_default(),
                    p.backend.service.as_ref().unwrap().name
                )
            })
            .collect()
    }

    #[test]
    fn the_path_goes_first_in_the_hosts_rule_and_leaves_it_as_it_was() {
        let mut edited = web();
        assert!(with_path(
            &mut edited,
            "b.example",
            challenge_path("tok", "solver", 8089)
        ));
        assert_eq!(
            paths(&edited, "b.example"),
            ["/.well-known/acme-challenge/tok solver", "/ b"]
        );
        assert_eq!(paths(&edited, "a.example"), ["/ a"]);
        // Present again: unchanged; another solver Service for the same token replaces it.
        assert!(!with_path(
            &mut edited,
            "b.example",
            challenge_path("tok", "solver", 8089)
        ));
        assert!(with_path(
            &mut edited,
            "b.example",
            challenge_path("tok", "other", 8089)
        ));
        assert_eq!(
            paths(&edited, "b.example"),
            ["/.well-known/acme-challenge/tok other", "/ b"]
        );
        assert!(without_path(&mut edited, "b.example", &path_of("tok")));
        assert_eq!(edited, web());
        assert!(!without_path(&mut edited, "b.example", &path_of("tok")));
    }

    #[test]
    fn a_host_without_a_rule_gets_one_that_goes_again() {
        let mut edited = web();
        assert!(with_path(
            &mut edited,
            "c.example",
            challenge_path("tok", "solver", 8089)
        ));
        assert_eq!(paths(&edited, "c.example"), ["/.well-known/acme-challenge/tok solver"]);
        assert!(without_path(&mut edited, "c.example", &path_of("tok")));
        assert_eq!(edited, web());
        // An Ingress without rules (a default backend only) gets the rule too.
        let mut bare = ingress(serde_json::json!({"metadata": {"name": "bare"}, "spec": {}}));
        assert!(with_path(&mut bare, "a.example", challenge_path("tok", "solver", 8089)));
        assert_eq!(paths(&bare, "a.example"), ["/.well-known/acme-challenge/tok solver"]);
    }
}
