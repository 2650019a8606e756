//! GRPCRoute rules as HTTPRoute rules: gRPC calls are HTTP/2 POSTs to `/SERVICE/METHOD`, so a method match is a
//! path match (Exact `/service/method`, a prefix `/service/` for a service alone, a regex for RegularExpression
//! or a method alone), and header matches and filters are the same.

use weft_gateway::api::{GRPCRouteMatch, GRPCRouteRule, HTTPBackendRef, HTTPPathMatch, HTTPRouteMatch, HTTPRouteRule};

fn path(m: &GRPCRouteMatch) -> Option<HTTPPathMatch> {
    let method = m.method.as_ref()?;
    let regex = method.type_.as_deref() == Some("RegularExpression");
    let (type_, value) = match (method.service.as_deref(), method.method.as_deref(), regex) {
        (Some(s), Some(m), false) => ("Exact", format!("/{s}/{m}")),
        (Some(s), None, false) => ("PathPrefix", format!("/{s}/")),
        (None, Some(m), false) => ("RegularExpression", format!("/[^/]+/{}", regex_escape(m))),
        (s, m, true) => (
            "RegularExpression",
            format!("/{}/{}", s.unwrap_or("[^/]+"), m.unwrap_or("[^/]+")),
        ),
        (None, None, false) => return None,
    };
    Some(HTTPPathMatch {
        type_: Some(type_.into()),
        value: Some(value),
    })
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = !c.is_ascii_alphanumeric() && c != '_';
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The HTTPRoute rule a GRPCRoute rule behaves as.
pub fn as_http(rule: &GRPCRouteRule) -> HTTPRouteRule {
    let matches = rule
        .matches
        .iter()
        .map(|m| HTTPRouteMatch {
            path: path(m),
            headers: m.headers.clone(),
            ..HTTPRouteMatch::default()
        })
        .collect();
    HTTPRouteRule {
        name: rule.name.clone(),
        matches: Some(matches),
        filters: rule.filters.clone(),
        backend_refs: rule
            .backend_refs
            .iter()
            .map(|b| HTTPBackendRef {
                backend: b.backend.clone(),
                filters: b.filters.clone(),
            })
            .collect(),
        session_persistence: rule.session_persistence.clone(),
        ..HTTPRouteRule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_gateway::api::GRPCMethodMatch;

    fn method(service: Option<&str>, method: Option<&str>) -> GRPCRouteMatch {
        GRPCRouteMatch {
            method: Some(GRPCMethodMatch {
                type_: None,
                service: service.map(str::to_string),
                method: method.map(str::to_string),
            }),
            headers: Vec::new(),
        }
    }

    #[test]
    fn methods_become_paths() {
        let exact = path(&method(Some("foo.Echo"), Some("Hi"))).unwrap();
        assert_eq!(
            (exact.type_.as_deref(), exact.value.as_deref()),
            (Some("Exact"), Some("/foo.Echo/Hi"))
        );
        let service = path(&method(Some("foo.Echo"), None)).unwrap();
        assert_eq!(service.value.as_deref(), Some("/foo.Echo/"));
        let any = path(&method(None, Some("Hi"))).unwrap();
        assert_eq!(any.value.as_deref(), Some("/[^/]+/Hi"));
        assert!(path(&GRPCRouteMatch::default()).is_none());
    }
}
