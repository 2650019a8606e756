//! networking.k8s.io/v1 Ingress and IngressClass, checked as kube-apiserver checks them
//! (pkg/apis/networking/validation): every error is collected, each worded as kube-apiserver words it
//! (`spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, not an IP address`), so kubectl prints the
//! same list it would print against a real cluster.

use crate::object::Other;
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressClass, IngressClassParametersReference, IngressSpec,
};
use std::fmt::Display;

/// Errors gathered while walking an object, each `field <path>: <reason>`.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn invalid(&mut self, path: &str, value: impl Display, msg: impl Display) {
        self.0.push(format!("field {path}: Invalid value: {value}: {msg}"));
    }

    fn required(&mut self, path: &str, detail: &str) {
        if detail.is_empty() {
            self.0.push(format!("field {path}: Required value"));
        } else {
            self.0.push(format!("field {path}: Required value: {detail}"));
        }
    }

    fn unsupported(&mut self, path: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(format!(
            "field {path}: Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ));
    }

    fn forbidden(&mut self, path: &str, detail: &str) {
        self.0.push(format!("field {path}: Forbidden: {detail}"));
    }

    /// One `field ...` line per error, as `validate::object` reports several at once.
    fn done(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.join("\n"))
        }
    }
}

/// The stored kind, typed (an Ingress is kept as `Object::Other`).
fn typed<T: serde::de::DeserializeOwned>(o: &Other) -> Result<T, String> {
    let value = serde_json::to_value(o).map_err(|e| e.to_string())?;
    crate::manifest::typed(value)
}

pub fn ingress(o: &Other) -> Result<(), String> {
    let ing: Ingress = typed(o)?;
    let mut errs = Errors::default();
    let spec = ing.spec.unwrap_or_default();
    ingress_spec(&spec, &mut errs);
    // The legacy annotation and the field name the class twice; they must agree (ValidateIngressCreate).
    const ANNOTATION: &str = "kubernetes.io/ingress.class";
    if let (Some(annotated), Some(class)) = (
        ing.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION)),
        &spec.ingress_class_name,
    ) && annotated != class
    {
        errs.invalid(
            &format!("annotations.{ANNOTATION}"),
            format!("{annotated:?}"),
            "must match `ingressClassName` when both are specified",
        );
    }
    errs.done()
}

fn ingress_spec(spec: &IngressSpec, errs: &mut Errors) {
    let rules = spec.rules.as_deref().unwrap_or_default();
    if rules.is_empty() && spec.default_backend.is_none() {
        errs.invalid("spec", "null", "either `defaultBackend` or `rules` must be specified");
    }
    if let Some(backend) = &spec.default_backend {
        ingress_backend(backend, "spec.defaultBackend", errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let path = format!("{at}.host");
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.invalid(&path, format!("{host:?}"), "must be a DNS name, not an IP address");
            }
            host_name(host, &path, errs);
        }
        if let Some(http) = &rule.http {
            if http.paths.is_empty() {
                errs.required(&format!("{at}.http.paths"), "");
            }
            for (j, p) in http.paths.iter().enumerate() {
                http_path(p, &format!("{at}.http.paths[{j}]"), errs);
            }
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        for (j, host) in tls.hosts.iter().flatten().enumerate() {
            host_name(host, &format!("spec.tls[{i}].hosts[{j}]"), errs);
        }
        if let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) {
            subdomain(secret, &format!("spec.tls[{i}].secretName"), errs);
        }
    }
    if let Some(class) = &spec.ingress_class_name {
        subdomain(class, "spec.ingressClassName", errs);
    }
}

/// A rule's or a TLS entry's host: a DNS subdomain, or one whose first label is a lone `*`.
fn host_name(host: &str, path: &str, errs: &mut Errors) {
    if !host.contains('*') {
        return subdomain(host, path, errs);
    }
    let valid = host
        .strip_prefix("*.")
        .is_some_and(|rest| rest.len() <= 253 - 2 && is_subdomain(rest));
    if !valid {
        errs.invalid(
            path,
            format!("{host:?}"),
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must \
             consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character \
             (e.g. '*.example.com', regex used for validation is \
             '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        );
    }
}

const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];
/// What Exact and Prefix paths may not contain or end with: they would match differently once normalised.
const BAD_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const BAD_SUFFIXES: [&str; 2] = ["/..", "/."];

fn http_path(p: &HTTPIngressPath, at: &str, errs: &mut Errors) {
    let type_path = format!("{at}.pathType");
    let path_path = format!("{at}.path");
    let path = p.path.as_deref().unwrap_or_default();
    match p.path_type.as_str() {
        // kube-apiserver stops at a missing pathType: nothing else of the path is checked.
        "" => return errs.required(&type_path, "pathType must be specified"),
        "Exact" | "Prefix" => {
            if !path.starts_with('/') {
                errs.invalid(&path_path, format!("{path:?}"), "must be an absolute path");
            }
            for seq in BAD_SEQUENCES.iter().filter(|s| path.contains(*s)) {
                errs.invalid(&path_path, format!("{path:?}"), format!("must not contain '{seq}'"));
            }
            for suffix in BAD_SUFFIXES.iter().filter(|s| path.ends_with(*s)) {
                errs.invalid(&path_path, format!("{path:?}"), format!("cannot end with '{suffix}'"));
            }
        }
        "ImplementationSpecific" => {
            if !path.is_empty() && !path.starts_with('/') {
                errs.invalid(&path_path, format!("{path:?}"), "must be an absolute path");
            }
        }
        other => errs.unsupported(&type_path, other, &PATH_TYPES),
    }
    ingress_backend(&p.backend, &format!("{at}.backend"), errs);
}

fn ingress_backend(backend: &IngressBackend, at: &str, errs: &mut Errors) {
    match (&backend.service, &backend.resource) {
        (Some(_), Some(_)) => errs.invalid(at, "\"\"", "cannot set both resource and service backends"),
        (None, Some(resource)) => local_reference(resource, &format!("{at}.resource"), errs),
        (None, None) => errs.invalid(at, "\"\"", "resource or service backend is required"),
        (Some(service), None) => {
            let name_path = format!("{at}.service.name");
            if service.name.is_empty() {
                errs.required(&name_path, "");
            } else if !is_dns1035_label(&service.name) {
                errs.invalid(
                    &name_path,
                    format!("{:?}", service.name),
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
                     alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or \
                     'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                );
            }
            let port = service.port.clone().unwrap_or_default();
            let name = port.name.as_deref().filter(|n| !n.is_empty());
            let number = port.number.filter(|n| *n != 0);
            match (name, number) {
                (Some(_), Some(_)) => errs.invalid(at, "\"\"", "cannot set both port name & port number"),
                (Some(name), None) => {
                    for msg in port_name(name) {
                        errs.invalid(&format!("{at}.service.port.name"), format!("{name:?}"), msg);
                    }
                }
                (None, Some(n)) if !(1..=65535).contains(&n) => errs.invalid(
                    &format!("{at}.service.port.number"),
                    n,
                    "must be between 1 and 65535, inclusive",
                ),
                (None, Some(_)) => {}
                (None, None) => errs.required(at, "port name or number is required"),
            }
        }
    }
}

fn local_reference(r: &TypedLocalObjectReference, at: &str, errs: &mut Errors) {
    if let Some(group) = &r.api_group {
        subdomain(group, &format!("{at}.apiGroup"), errs);
    }
    path_segment(&r.kind, &format!("{at}.kind"), errs);
    path_segment(&r.name, &format!("{at}.name"), errs);
}

/// A name that will be one segment of a URL path (a referenced kind or object name): required, not `.`/`..`,
/// no `/` or `%`.
fn path_segment(value: &str, path: &str, errs: &mut Errors) {
    if value.is_empty() {
        return errs.required(path, "");
    }
    if value == "." || value == ".." {
        errs.invalid(path, format!("{value:?}"), format!("may not be '{value}'"));
    }
    for bad in ["/", "%"].into_iter().filter(|b| value.contains(b)) {
        errs.invalid(path, format!("{value:?}"), format!("may not contain '{bad}'"));
    }
}

pub fn ingress_class(o: &Other) -> Result<(), String> {
    let class: IngressClass = typed(o)?;
    let mut errs = Errors::default();
    let spec = class.spec.unwrap_or_default();
    match spec.controller.as_deref().unwrap_or_default() {
        "" => errs.required("spec.controller", ""),
        controller => {
            if controller.len() > 250 {
                errs.0
                    .push("field spec.controller: Too long: may not be more than 250 bytes".into());
            }
            domain_prefixed_path(controller, "spec.controller", &mut errs);
        }
    }
    if let Some(params) = &spec.parameters {
        parameters(params, "spec.parameters", &mut errs);
    }
    errs.done()
}

/// The IngressClass's controller is what every Ingress of the class was written for: it never changes.
pub fn ingress_class_update(old: &Other, new: &Other) -> Result<(), String> {
    let controller =
        |o: &Other| -> Result<Option<String>, String> { Ok(typed::<IngressClass>(o)?.spec.and_then(|s| s.controller)) };
    let (was, now) = (controller(old)?, controller(new)?);
    if was != now {
        let mut errs = Errors::default();
        errs.invalid(
            "spec.controller",
            format!("{:?}", now.unwrap_or_default()),
            "field is immutable",
        );
        return errs.done();
    }
    Ok(())
}

fn parameters(p: &IngressClassParametersReference, at: &str, errs: &mut Errors) {
    if let Some(group) = &p.api_group {
        subdomain(group, &format!("{at}.apiGroup"), errs);
    }
    path_segment(&p.kind, &format!("{at}.kind"), errs);
    path_segment(&p.name, &format!("{at}.name"), errs);
    let namespace_path = format!("{at}.namespace");
    // kube-apiserver defaults an unset scope to Cluster.
    match p.scope.as_deref().unwrap_or("Cluster") {
        "Cluster" => {
            if p.namespace.is_some() {
                errs.forbidden(&namespace_path, "`parameters.scope` is set to 'Cluster'");
            }
        }
        "Namespace" => match p.namespace.as_deref() {
            None | Some("") => errs.required(&namespace_path, "`parameters.scope` is set to 'Namespace'"),
            Some(ns) => {
                if super::dns_label(ns).is_err() {
                    errs.invalid(
                        &namespace_path,
                        format!("{ns:?}"),
                        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
                         and must start and end with an alphanumeric character",
                    );
                }
            }
        },
        other => errs.unsupported(&format!("{at}.scope"), other, &["Cluster", "Namespace"]),
    }
}

/// `example.com/ingress-controller`: a DNS subdomain, a slash, and a non-empty HTTP path.
fn domain_prefixed_path(value: &str, path: &str, errs: &mut Errors) {
    let Some((domain, rest)) = value.split_once('/').filter(|(d, r)| !d.is_empty() && !r.is_empty()) else {
        return errs.invalid(
            path,
            format!("{value:?}"),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        );
    };
    subdomain(domain, path, errs);
    let path_char = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c);
    if !rest.chars().all(path_char) {
        errs.invalid(
            path,
            format!("{rest:?}"),
            "Invalid path must match the regex [A-Za-z0-9/\\-._~%!$&'()*+,;=:]+ (e.g. '/', '/foo')",
        );
    }
}

/// A name kube-apiserver checks as an RFC 1123 subdomain (hosts, Secret and IngressClass names, API groups).
fn subdomain(value: &str, path: &str, errs: &mut Errors) {
    if value.len() > 253 {
        errs.invalid(path, format!("{value:?}"), "must be no more than 253 characters");
    }
    if !is_subdomain(value) {
        errs.invalid(
            path,
            format!("{value:?}"),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and \
             must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        );
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` labels joined by dots (no length limit per label: that is the 253 in total).
fn is_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

/// What Service names are: an RFC 1035 label (starts with a letter).
fn is_dns1035_label(s: &str) -> bool {
    s.len() <= 63 && s.starts_with(|c: char| c.is_ascii_lowercase()) && is_subdomain(s) && !s.contains('.')
}

/// An IANA service name, each broken rule its own message as kube-apiserver's IsValidPortName gives them.
fn port_name(name: &str) -> Vec<&'static str> {
    let mut msgs = Vec::new();
    if name.len() > 15 {
        msgs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        msgs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        msgs.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        msgs.push("must not begin or end with a hyphen");
    }
    msgs
}

#[cfg(test)]
mod tests;
