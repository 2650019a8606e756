//! The routing table: every admitted Ingress merged into hosts and their path rules, each leading to a Service
//! port's upstreams, plus the TLS certificates by name. Built whole from a snapshot of the cluster and never
//! changed after: the proxy swaps in a new one on every change.
//!
//! Merging follows ingress-nginx: Ingresses are taken oldest first (creationTimestamp, then namespace/name) and
//! the first to claim a host+path (or a TLS host, or the default backend) keeps it; other paths of one host from
//! several Ingresses are merged. An Ingress annotated `canary: "true"` claims nothing: its paths become the
//! canaries of the same host+path of the others (one canary per path, the first), whatever their ages.

use crate::annotations::{self, Annotations, Canary};
use crate::auth::Users;
use crate::backend::UpstreamClient;
use crate::class::Classes;
use crate::gateway::{self, Gateways};
use crate::host;
use crate::metrics::{Metrics, RouteKey, RouteMetrics};
use crate::path::{self, Kind, PathRule};
use crate::proxyssl::{self, Material};
use crate::ratelimit::{Limiter, Limiters, Limits};
use crate::tls::{self, Certificates};
use crate::upstream::{Index, Upstream};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{
    Ingress, IngressBackend, IngressClass, IngressServiceBackend, ServiceBackendPort,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use weft_model::{Object, Snapshot};

/// Where a matched request goes.
#[derive(Clone, Debug)]
pub enum Target {
    Service(Arc<Upstream>),
    /// The backend cannot be served (a missing Service or port): 503, with why.
    Unavailable(Arc<str>),
}

#[derive(Clone, Debug)]
pub struct Route {
    pub target: Target,
    /// `namespace/name` of the Ingress the route comes from.
    pub ingress: Arc<str>,
    /// Plain HTTP requests get a 308 to HTTPS (the Ingress has `tls` and no `ssl-redirect: "false"`, or
    /// `force-ssl-redirect`).
    pub ssl_redirect: bool,
    /// The settings of the Ingress's annotations.
    pub annotations: Arc<Annotations>,
    pub metrics: Arc<RouteMetrics>,
    /// The canary's backend, which takes the requests its split says.
    pub canary: Option<Arc<CanaryRoute>>,
    /// The Ingress's `limit-*` state, shared by its routes and kept across tables.
    pub limiter: Option<Arc<Limiter>>,
    /// `auth-type: basic`: the users, or why none can pass (503).
    pub auth: Option<Result<Arc<Users>, Arc<str>>>,
    /// The `default-backend` annotation's Service: for a backend without endpoints, and the custom errors.
    pub fallback: Option<Target>,
    /// `proxy-ssl-*`: the client of the Ingress's upstreams, or why there is none (503).
    pub upstream_tls: Option<Result<UpstreamClient, Arc<str>>>,
}

/// The backend of a `canary: "true"` Ingress for a route's host and path; the main route's settings apply.
#[derive(Clone, Debug)]
pub struct CanaryRoute {
    pub target: Target,
    /// `namespace/name` of the canary Ingress.
    pub ingress: Arc<str>,
    pub split: Canary,
}

type Paths = Vec<(PathRule, Route)>;

/// Something wrong with the objects, reported when it first appears (a log line, and a Warning event on the
/// Ingress).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The Ingress concerned (namespace, name); none for an object that does not decode or the controller's own
    /// `--default-ssl-certificate`.
    pub ingress: Option<(String, String)>,
    /// Why, in one CamelCase word (the event's reason).
    pub reason: &'static str,
    pub message: String,
}

/// What the table is built for.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The `spec.controller` of the IngressClasses served.
    pub controller: String,
    /// `namespace/name` of the kubernetes.io/tls Secret served for names no Ingress's Secret covers (else the
    /// generated self-signed certificate).
    pub default_certificate: Option<(String, String)>,
    /// Where the routes' request metrics live across tables.
    pub metrics: Arc<Metrics>,
    /// Where the Ingresses' `limit-*` state lives across tables.
    pub limiters: Arc<Limiters>,
    /// Where the upstream clients of `proxy-ssl-*` live across tables.
    pub upstream_clients: Arc<proxyssl::Clients>,
    /// The Gateway API's GatewayClasses served, and where their Services go.
    pub gateway: gateway::Settings,
}

#[derive(Default, Debug)]
pub struct Table {
    precise: HashMap<String, Paths>,
    /// `*.foo.com` rules, by `foo.com`.
    wildcard: HashMap<String, Paths>,
    /// Rules without a host.
    any: Paths,
    default_backend: Option<Route>,
    certificates: Certificates,
    default_certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    /// What was wrong with the objects (missing Services and Secrets, undecodable objects).
    problems: Vec<Problem>,
    /// The Gateways and their routes.
    gateways: Gateways,
}

impl Table {
    /// The table of the Ingresses of the controller's classes in `snapshot`.
    pub fn build(snapshot: &Snapshot, config: &Config) -> Table {
        let mut problems = Vec::new();
        let classes: Vec<IngressClass> = decode_all(snapshot, "IngressClass", &mut problems);
        let classes = Classes::of(&config.controller, &classes);
        let mut ingresses: Vec<Ingress> = decode_all(snapshot, "Ingress", &mut problems);
        ingresses.retain(|i| classes.admits(i));
        ingresses.sort_by(|a, b| {
            let key = |i: &Ingress| {
                (
                    i.metadata.creation_timestamp.clone(),
                    i.metadata.namespace.clone(),
                    i.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        // Canaries after every main Ingress, so each finds the route it joins.
        ingresses.sort_by_key(is_canary);
        let index = Index::new(snapshot.services(), snapshot.endpoint_slices());
        let mut builder = Builder {
            snapshot,
            index,
            table: Table {
                problems,
                ..Table::default()
            },
            upstreams: HashMap::new(),
            secrets: HashMap::new(),
            metrics: &config.metrics,
            live: BTreeSet::new(),
            limiters: &config.limiters,
            limited: BTreeSet::new(),
            clients: &config.upstream_clients,
            clients_used: BTreeSet::new(),
        };
        if let Some((namespace, name)) = &config.default_certificate {
            builder.table.default_certificate = builder.secret(&None, namespace, name);
        }
        for ingress in &ingresses {
            builder.add(ingress);
        }
        builder.table.gateways = gateway::compile::Compiler {
            settings: &config.gateway,
            snapshot,
            index: &builder.index,
            metrics: &config.metrics,
            live: &mut builder.live,
            clients: &config.upstream_clients,
            clients_used: &mut builder.clients_used,
        }
        .compile();
        config.metrics.retain(&builder.live);
        config.limiters.retain(&builder.limited);
        config.upstream_clients.retain(&builder.clients_used);
        let mut table = builder.table;
        // A canary without a main route leaves its host without paths; rules of a wider host still apply to it.
        table.precise.retain(|_, paths| !paths.is_empty());
        table.wildcard.retain(|_, paths| !paths.is_empty());
        for paths in table
            .precise
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain([&mut table.any])
        {
            if paths
                .iter()
                .any(|(rule, route)| route.annotations.wants_regex(&rule.path))
            {
                to_regexes(paths, &mut table.problems);
            }
            paths.sort_by(|a, b| a.0.precedence(&b.0));
        }
        table
    }

    /// The route of a request for `name` (a Host header reduced by `host::of_authority`) and `path` (no query);
    /// none: the default backend's 404. The most specific host wins (precise, then wildcard, then rules without
    /// a host), then its most specific path; a request for a host whose paths do not match goes to the
    /// defaultBackend.
    pub fn route(&self, name: &str, path: &str) -> Option<&Route> {
        self.lookup(name, path).map(|(_, route)| route)
    }

    /// The route of a request, and the path rule that took it (none: the default backend).
    pub fn lookup(&self, name: &str, path: &str) -> Option<(Option<&PathRule>, &Route)> {
        let paths = self
            .precise
            .get(name)
            .or_else(|| host::parent(name).and_then(|d| self.wildcard.get(d)))
            .unwrap_or(&self.any);
        match path::first_match(paths, path) {
            Some((rule, route)) => Some((Some(rule), route)),
            None => self.default_backend.as_ref().map(|route| (None, route)),
        }
    }

    pub fn certificates(&self) -> &Certificates {
        &self.certificates
    }

    /// The `--default-ssl-certificate` Secret's certificate, when it exists and is valid.
    pub fn default_certificate(&self) -> Option<&Arc<rustls::sign::CertifiedKey>> {
        self.default_certificate.as_ref()
    }

    /// The Gateway API part: Gateways' ports, routes and wanted statuses.
    pub fn gateways(&self) -> &Gateways {
        &self.gateways
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

/// Whether the Ingress says `canary: "true"`.
fn is_canary(ingress: &Ingress) -> bool {
    let key = format!("{}canary", annotations::PREFIX);
    let value = ingress.metadata.annotations.as_ref().and_then(|a| a.get(&key));
    value.is_some_and(|v| v.trim() == "true")
}

/// Makes every path of a host a regex, as ingress-nginx does once any Ingress asks it for one of the host's
/// paths; a path that is no regex is reported and not served.
fn to_regexes(paths: &mut Paths, problems: &mut Vec<Problem>) {
    paths.retain_mut(|(rule, route)| match rule.to_regex() {
        Ok(regex) => {
            *rule = regex;
            true
        }
        Err(e) => {
            let who = route.ingress.split_once('/').map(|(n, i)| (n.to_string(), i.to_string()));
            problems.push(Problem {
                ingress: who,
                reason: "InvalidPath",
                message: format!(
                    "path {:?} must be a regex (use-regex or rewrite-target on this host) and is not: {e}; it is not served",
                    rule.path
                ),
            });
            false
        }
    });
}

/// Objects of `kind` as their typed struct (weft-model keeps kinds it does not act on as JSON).
pub(crate) fn decode_all<T: serde::de::DeserializeOwned>(
    snapshot: &Snapshot,
    kind: &str,
    problems: &mut Vec<Problem>,
) -> Vec<T> {
    snapshot
        .of_kind(kind)
        .filter_map(|o: &Object| match serde_json::from_value(o.to_value()) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(Problem {
                    ingress: None,
                    reason: "Undecodable",
                    message: format!("{}: {e}", o.key()),
                });
                None
            }
        })
        .collect()
}

/// A Secret's certificate, or the reason and message of why it cannot serve.
type Loaded = Result<Arc<rustls::sign::CertifiedKey>, (&'static str, String)>;

struct Builder<'a> {
    snapshot: &'a Snapshot,
    index: Index<'a>,
    table: Table,
    /// One upstream per Service port, shared by every route to it (one round robin).
    upstreams: HashMap<(String, String, String), Target>,
    /// Secrets read so far, by namespace/name: the certificate, or the reason and message of a problem.
    secrets: HashMap<(String, String), Loaded>,
    metrics: &'a Metrics,
    /// The routes made, by their metrics' names.
    live: BTreeSet<RouteKey>,
    limiters: &'a Limiters,
    /// The limiters in use, by Ingress.
    limited: BTreeSet<(String, Limits)>,
    clients: &'a proxyssl::Clients,
    clients_used: BTreeSet<proxyssl::Key>,
}

impl Builder<'_> {
    fn add(&mut self, ingress: &Ingress) {
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let who = Some((namespace.clone(), ingress.metadata.name.clone().unwrap_or_default()));
        let id: Arc<str> = format!("{namespace}/{}", ingress.metadata.name.as_deref().unwrap_or_default()).into();
        let Some(spec) = &ingress.spec else { return };
        let (annotations, complaints) = Annotations::parse(ingress.metadata.annotations.as_ref());
        for complaint in complaints {
            self.table.problems.push(Problem {
                ingress: who.clone(),
                reason: complaint.reason,
                message: complaint.message,
            });
        }
        let annotations = Arc::new(annotations);
        let limiter = annotations.limits.any().then(|| {
            self.limited.insert((id.to_string(), annotations.limits.clone()));
            self.limiters.of(&id, &annotations.limits)
        });
        let auth = annotations.auth.as_ref().map(|auth| self.users(&who, &namespace, auth));
        let fallback = annotations
            .default_backend
            .as_deref()
            .map(|service| self.fallback(&who, &namespace, service));
        let upstream_tls = annotations
            .proxy_ssl
            .any()
            .then(|| self.upstream_tls(&who, &namespace, &id, &annotations))
            .flatten();
        let tls = spec.tls.as_deref().unwrap_or_default();
        let ssl_redirect = (!tls.is_empty() && annotations.ssl_redirect) || annotations.force_ssl_redirect;
        for entry in tls {
            let Some(secret) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let Some(key) = self.secret(&who, &namespace, secret) else {
                continue;
            };
            for name in entry.hosts.as_deref().unwrap_or_default() {
                self.table.certificates.insert(name, key.clone());
            }
        }
        if let Some(backend) = &spec.default_backend
            && self.table.default_backend.is_none()
            && annotations.canary.is_none()
        {
            let target = self.target(&who, &namespace, backend);
            let metrics = self.metrics_of(&id, "", "");
            self.table.default_backend = Some(Route {
                target,
                ingress: id.clone(),
                ssl_redirect: false,
                annotations: annotations.clone(),
                metrics,
                canary: None,
                limiter: limiter.clone(),
                auth: auth.clone(),
                fallback: fallback.clone(),
                upstream_tls: upstream_tls.clone(),
            });
        }
        for rule in spec.rules.as_deref().unwrap_or_default() {
            let Some(http) = &rule.http else { continue };
            for p in &http.paths {
                let Some(kind) = Kind::parse(&p.path_type) else {
                    self.table.problems.push(Problem {
                        ingress: who.clone(),
                        reason: "InvalidPathType",
                        message: format!("pathType {:?} is not a path type; the path is not served", p.path_type),
                    });
                    continue;
                };
                // Only ImplementationSpecific may leave the path out; it then matches everything.
                let rule_path = PathRule::new(kind, p.path.as_deref().unwrap_or("/"));
                let target = self.target(&who, &namespace, &p.backend);
                let host = rule.host.as_deref().unwrap_or_default();
                let metrics = annotations
                    .canary
                    .is_none()
                    .then(|| self.metrics_of(&id, host, &rule_path.path));
                let paths = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                    None => &mut self.table.any,
                    Some(h) => {
                        let h = h.to_ascii_lowercase();
                        match host::wildcard_domain(&h) {
                            Some(domain) => self.table.wildcard.entry(domain.to_string()).or_default(),
                            None => self.table.precise.entry(h).or_default(),
                        }
                    }
                };
                let existing = paths.iter_mut().find(|(existing, _)| *existing == rule_path);
                if let Some(split) = &annotations.canary {
                    let problem = match existing {
                        Some((_, main)) if main.canary.is_none() => {
                            main.canary = Some(Arc::new(CanaryRoute {
                                target,
                                ingress: id.clone(),
                                split: split.clone(),
                            }));
                            None
                        }
                        Some((_, main)) => Some((
                            "CanaryConflict",
                            format!(
                                "already has the canary {}",
                                main.canary.as_ref().map_or("", |c| &c.ingress)
                            ),
                        )),
                        None => Some(("CanaryWithoutMain", "has no main Ingress".to_string())),
                    };
                    if let Some((reason, why)) = problem {
                        self.table.problems.push(Problem {
                            ingress: who.clone(),
                            reason,
                            message: format!(
                                "canary path {:?} of host {:?} {why}; it is not served",
                                rule_path.path, host
                            ),
                        });
                    }
                } else if let (None, Some(metrics)) = (existing, metrics) {
                    let route = Route {
                        target,
                        ingress: id.clone(),
                        ssl_redirect,
                        annotations: annotations.clone(),
                        metrics,
                        canary: None,
                        limiter: limiter.clone(),
                        auth: auth.clone(),
                        fallback: fallback.clone(),
                        upstream_tls: upstream_tls.clone(),
                    };
                    paths.push((rule_path, route));
                }
            }
        }
    }

    fn target(&mut self, who: &Option<(String, String)>, namespace: &str, backend: &IngressBackend) -> Target {
        let Some(service) = &backend.service else {
            let message = "resource backends are not supported; its paths answer 503".to_string();
            let target = Target::Unavailable(message.as_str().into());
            self.table.problems.push(Problem {
                ingress: who.clone(),
                reason: "UnsupportedBackend",
                message,
            });
            return target;
        };
        let port = service.port.clone().unwrap_or_default();
        let port_key = port
            .number
            .map_or_else(|| port.name.clone().unwrap_or_default(), |n| n.to_string());
        let key = (namespace.to_string(), service.name.clone(), port_key);
        let target = match self.upstreams.get(&key) {
            Some(known) => known.clone(),
            None => {
                let target = match self.index.upstream(namespace, &service.name, &port) {
                    Ok(upstream) => Target::Service(Arc::new(upstream)),
                    Err(e) => Target::Unavailable(format!("{e}; its paths answer 503").into()),
                };
                self.upstreams.insert(key, target.clone());
                target
            }
        };
        // Every Ingress naming a missing backend hears of it.
        if let Target::Unavailable(why) = &target {
            self.table.problems.push(Problem {
                ingress: who.clone(),
                reason: "BackendNotFound",
                message: why.to_string(),
            });
        }
        target
    }

    /// The users of an Ingress's `auth-secret`, or why there are none (its paths answer 503, as ingress-nginx's).
    fn users(
        &mut self,
        who: &Option<(String, String)>,
        namespace: &str,
        auth: &crate::auth::BasicAuth,
    ) -> Result<Arc<Users>, Arc<str>> {
        // `namespace/name` is taken for the Ingress's own namespace only: no reading of others' Secrets.
        let name = match auth.secret.split_once('/') {
            Some((ns, name)) if ns == namespace => name,
            Some(_) => "",
            None => auth.secret.as_str(),
        };
        let key = weft_model::Key::new("Secret", Some(namespace), name);
        let loaded = match self
            .snapshot
            .get(&key)
            .map(|o| serde_json::from_value::<Secret>(o.to_value()))
        {
            _ if name.is_empty() => Err((
                "AuthUnavailable",
                "no usable auth-secret (in the Ingress's namespace) and auth-type basic".to_string(),
            )),
            None => Err((
                "SecretNotFound",
                format!("auth Secret {namespace}/{name} does not exist"),
            )),
            Some(Err(e)) => Err(("InvalidSecret", format!("auth Secret {namespace}/{name}: {e}"))),
            Some(Ok(secret)) => Users::from_secret(&secret, auth)
                .map_err(|e| ("InvalidSecret", format!("auth Secret {namespace}/{name} {e}"))),
        };
        match loaded {
            Ok((users, refused)) => {
                if !refused.is_empty() {
                    self.table.problems.push(Problem {
                        ingress: who.clone(),
                        reason: "UnsupportedPasswordHash",
                        message: format!(
                            "auth Secret {namespace}/{name}: users {refused:?} have a password hash weft does not verify (only bcrypt, apr1 and {{SHA}}); they cannot log in"
                        ),
                    });
                }
                Ok(Arc::new(users))
            }
            Err((reason, why)) => {
                let message = format!("{why}; its paths answer 503");
                self.table.problems.push(Problem {
                    ingress: who.clone(),
                    reason,
                    message: message.clone(),
                });
                Err(message.into())
            }
        }
    }

    /// The `default-backend` annotation's Service (of the Ingress's namespace), at its first port as in
    /// ingress-nginx.
    fn fallback(&mut self, who: &Option<(String, String)>, namespace: &str, service: &str) -> Target {
        let key = weft_model::Key::new("Service", Some(namespace), service);
        let port = self
            .snapshot
            .get(&key)
            .and_then(|o| serde_json::from_value::<Service>(o.to_value()).ok())
            .and_then(|s| s.spec?.ports?.first().map(|p| p.port));
        let backend = IngressBackend {
            service: Some(IngressServiceBackend {
                name: service.to_string(),
                port: Some(ServiceBackendPort {
                    number: Some(port.unwrap_or(80)),
                    name: None,
                }),
            }),
            resource: None,
        };
        self.target(who, namespace, &backend)
    }

    /// The upstream client of an Ingress's `proxy-ssl-*`: none when its backend protocol has no TLS (reported),
    /// an error when its Secret cannot serve (its paths answer 503, never unverified).
    fn upstream_tls(
        &mut self,
        who: &Option<(String, String)>,
        namespace: &str,
        id: &str,
        annotations: &Annotations,
    ) -> Option<Result<UpstreamClient, Arc<str>>> {
        let protocol = annotations.backend_protocol;
        if !protocol.tls() {
            self.table.problems.push(Problem {
                ingress: who.clone(),
                reason: "InvalidAnnotation",
                message:
                    "the proxy-ssl-* annotations apply to backend-protocol HTTPS or GRPCS only; they have no effect"
                        .into(),
            });
            return None;
        }
        let ssl = &annotations.proxy_ssl;
        let material = match ssl.secret.as_deref() {
            None => Ok(Material::default()),
            Some(secret) => {
                let name = match secret.split_once('/') {
                    Some((ns, name)) if ns == namespace => name,
                    Some(_) => "",
                    None => secret,
                };
                let key = weft_model::Key::new("Secret", Some(namespace), name);
                match self
                    .snapshot
                    .get(&key)
                    .map(|o| serde_json::from_value::<Secret>(o.to_value()))
                {
                    _ if name.is_empty() => Err((
                        "InvalidAnnotation",
                        format!("proxy-ssl-secret {secret:?} is not in the Ingress's namespace"),
                    )),
                    None => Err((
                        "SecretNotFound",
                        format!("proxy-ssl Secret {namespace}/{name} does not exist"),
                    )),
                    Some(Err(e)) => Err(("InvalidSecret", format!("proxy-ssl Secret {namespace}/{name}: {e}"))),
                    Some(Ok(s)) => Material::from_secret(&s)
                        .map_err(|e| ("InvalidSecret", format!("proxy-ssl Secret {namespace}/{name}: {e}"))),
                }
            }
        };
        let client = material.and_then(|material| {
            let key = (
                id.to_string(),
                ssl.clone(),
                protocol,
                annotations.connect_timeout,
                material.digest.clone(),
            );
            self.clients_used.insert(key.clone());
            let connect = annotations.connect_timeout.unwrap_or(crate::proxy::CONNECT_TIMEOUT);
            self.clients
                .of(key, &material, connect)
                .map_err(|e| ("InvalidAnnotation", e.to_string()))
        });
        Some(client.map_err(|(reason, why)| {
            let message = format!("{why}; its paths answer 503");
            self.table.problems.push(Problem {
                ingress: who.clone(),
                reason,
                message: message.clone(),
            });
            message.into()
        }))
    }

    fn metrics_of(&mut self, ingress: &str, host: &str, path: &str) -> Arc<RouteMetrics> {
        let key = (ingress.to_string(), host.to_string(), path.to_string());
        self.live.insert(key.clone());
        self.metrics.route(key)
    }

    /// The certificate of Secret `namespace/name`, read once per build; `who` asks (for problems).
    fn secret(
        &mut self,
        who: &Option<(String, String)>,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let key = (namespace.to_string(), name.to_string());
        let snapshot = self.snapshot;
        let loaded = self.secrets.entry(key).or_insert_with(|| {
            let object = snapshot.get(&weft_model::Key::new("Secret", Some(namespace), name));
            match object.map(|o| serde_json::from_value::<Secret>(o.to_value())) {
                None => Err(("SecretNotFound", format!("Secret {namespace}/{name} does not exist"))),
                Some(Err(e)) => Err(("InvalidSecret", format!("Secret {namespace}/{name}: {e}"))),
                Some(Ok(secret)) => tls::from_secret(&secret)
                    .map(Arc::new)
                    .map_err(|e| ("InvalidSecret", format!("Secret {namespace}/{name} {e}"))),
            }
        });
        match loaded {
            Ok(certified) => Some(certified.clone()),
            Err((reason, why)) => {
                let message = format!("{why}; the default certificate serves its hosts");
                self.table.problems.push(Problem {
                    ingress: who.clone(),
                    reason,
                    message,
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLLER: &str = "weft.dev/ingress";

    const BASE: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: weft.dev/ingress}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: default, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{port: 9090}]
endpoints: [{addresses: [10.0.0.2]}]
";

    fn table(extra: &str) -> Table {
        let text = format!("{BASE}---\n{extra}");
        let config = Config {
            controller: CONTROLLER.into(),
            ..Config::default()
        };
        Table::build(&Snapshot::new(1, weft_model::parse(&text, "t").unwrap()), &config)
    }

    /// Where a request goes: the upstream's first endpoint, "503" or "404".
    fn goes(table: &Table, name: &str, path: &str) -> String {
        match table.route(name, path).map(|r| &r.target) {
            None => "404".into(),
            Some(Target::Unavailable(_)) => "503".into(),
            Some(Target::Service(u)) => u.endpoints().first().map_or("no endpoints".into(), |e| e.to_string()),
        }
    }

    fn ingress(name: &str, created: &str, class: &str, rules: &str) -> String {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default, creationTimestamp: \"{created}\"}}\nspec:\n  ingressClassName: {class}\n{rules}\n---\n"
        )
    }

    fn rule(host: &str, path: &str, kind: &str, service: &str, port: &str) -> String {
        format!(
            "  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: {path}, pathType: {kind}, backend: {{service: {{name: {service}, port: {port}}}}}}}"
        )
    }

    #[test]
    fn hosts_precise_then_one_label_wildcards() {
        let t = table(&format!(
            "{}{}",
            ingress(
                "a",
                "2026-01-01T00:00:00Z",
                "nginx",
                &rule("foo.com", "/", "Prefix", "web", "{number: 80}")
            ),
            ingress(
                "b",
                "2026-01-01T00:00:00Z",
                "nginx",
                &rule("\"*.foo.com\"", "/", "Prefix", "api", "{number: 80}")
            )
        ));
        assert_eq!(goes(&t, "foo.com", "/"), "10.0.0.1:8080");
        assert_eq!(goes(&t, "bar.foo.com", "/x"), "10.0.0.2:9090");
        assert_eq!(goes(&t, "baz.bar.foo.com", "/"), "404");
        assert_eq!(goes(&t, "other.com", "/"), "404");
    }

    #[test]
    fn ingresses_of_other_classes_are_ignored() {
        let t = table(&ingress(
            "a",
            "2026-01-01T00:00:00Z",
            "other",
            &rule("foo.com", "/", "Prefix", "web", "{number: 80}"),
        ));
        assert_eq!(goes(&t, "foo.com", "/"), "404");
    }

    #[test]
    fn ingresses_merge_per_host_and_the_oldest_wins_a_path() {
        let t = table(&format!(
            "{}{}{}",
            ingress(
                "new",
                "2026-02-01T00:00:00Z",
                "nginx",
                &rule("foo.com", "/", "Prefix", "api", "{number: 80}")
            ),
            ingress(
                "old",
                "2026-01-01T00:00:00Z",
                "nginx",
                &rule("foo.com", "/", "Prefix", "web", "{name: http}")
            ),
            ingress(
                "more",
                "2026-03-01T00:00:00Z",
                "nginx",
                &rule("foo.com", "/api", "Exact", "api", "{number: 80}")
            ),
        ));
        assert_eq!(goes(&t, "foo.com", "/"), "10.0.0.1:8080");
        assert_eq!(goes(&t, "foo.com", "/api"), "10.0.0.2:9090");
        assert_eq!(goes(&t, "foo.com", "/api/x"), "10.0.0.1:8080");
        assert_eq!(&*t.route("foo.com", "/").unwrap().ingress, "default/old");
    }

    #[test]
    fn a_missing_service_is_503_for_its_path_only() {
        let rules = "  rules:\n  - http:\n      paths:\n      - {path: /gone, pathType: Prefix, backend: {service: {name: gone, port: {number: 80}}}}\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}";
        let t = table(&ingress("a", "2026-01-01T00:00:00Z", "nginx", rules));
        assert_eq!(goes(&t, "any.host", "/gone/x"), "503");
        assert_eq!(goes(&t, "any.host", "/x"), "10.0.0.1:8080");
        assert!(
            t.problems().iter().any(|p| p.reason == "BackendNotFound"
                && p.ingress == Some(("default".into(), "a".into()))
                && p.message.contains("Service default/gone does not exist")),
            "{:?}",
            t.problems()
        );
    }

    #[test]
    fn the_default_backend_takes_what_no_rule_matches() {
        let spec = "  defaultBackend: {service: {name: api, port: {number: 80}}}\n  rules:\n  - host: foo.com\n    http:\n      paths:\n      - {path: /web, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}";
        let t = table(&ingress("a", "2026-01-01T00:00:00Z", "nginx", spec));
        assert_eq!(goes(&t, "foo.com", "/web"), "10.0.0.1:8080");
        assert_eq!(goes(&t, "foo.com", "/other"), "10.0.0.2:9090");
        assert_eq!(goes(&t, "bar.com", "/"), "10.0.0.2:9090");
    }

    #[test]
    fn tls_ingresses_redirect_unless_annotated_and_missing_secrets_are_reported() {
        let tls = "  tls: [{hosts: [foo.com], secretName: absent}]\n";
        let plain = rule("foo.com", "/", "Prefix", "web", "{number: 80}");
        let t = table(&ingress("a", "2026-01-01T00:00:00Z", "nginx", &format!("{tls}{plain}")));
        assert!(t.route("foo.com", "/").unwrap().ssl_redirect);
        assert!(t.certificates().get("foo.com").is_none());
        assert!(
            t.problems()
                .iter()
                .any(|p| p.reason == "SecretNotFound" && p.message.contains("Secret default/absent does not exist"))
        );
        let off = ingress("a", "2026-01-01T00:00:00Z", "nginx", &format!("{tls}{plain}")).replace(
            "namespace: default,",
            "namespace: default, annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"},",
        );
        assert!(!table(&off).route("foo.com", "/").unwrap().ssl_redirect);
        let t = table(&ingress("a", "2026-01-01T00:00:00Z", "nginx", &plain));
        assert!(!t.route("foo.com", "/").unwrap().ssl_redirect);
    }

    /// An Ingress with `annotations` (a YAML flow mapping's inside).
    fn annotated(name: &str, created: &str, annotations: &str, rules: &str) -> String {
        ingress(name, created, "nginx", rules).replace(
            "namespace: default,",
            &format!("namespace: default, annotations: {{{annotations}}},"),
        )
    }

    #[test]
    fn annotations_are_typed_per_route_and_unsupported_ones_are_reported() {
        let t = table(&annotated(
            "a",
            "2026-01-01T00:00:00Z",
            "nginx.ingress.kubernetes.io/proxy-body-size: 8k, nginx.ingress.kubernetes.io/auth-tls-secret: default/ca, nginx.ingress.kubernetes.io/server-snippet: \"return 200;\", nginx.ingress.kubernetes.io/force-ssl-redirect: \"true\"",
            &rule("foo.com", "/", "Prefix", "web", "{number: 80}"),
        ));
        let route = t.route("foo.com", "/").unwrap();
        assert_eq!(route.annotations.body_limit, Some(8192));
        assert!(route.ssl_redirect, "force-ssl-redirect without tls");
        let who = Some(("default".to_string(), "a".to_string()));
        let reported: Vec<(&str, bool)> = t.problems().iter().map(|p| (p.reason, p.ingress == who)).collect();
        assert_eq!(reported, [("UnsupportedAnnotation", true), ("SnippetRefused", true)]);
        assert!(
            t.problems()[0]
                .message
                .contains("nginx.ingress.kubernetes.io/auth-tls-secret")
        );
        assert!(
            t.problems()[1]
                .message
                .contains("nginx.ingress.kubernetes.io/server-snippet")
        );
    }

    #[test]
    fn use_regex_makes_every_path_of_the_host_a_regex_and_bad_regexes_are_reported() {
        let regex = annotated(
            "a",
            "2026-01-01T00:00:00Z",
            "nginx.ingress.kubernetes.io/use-regex: \"true\"",
            &rule(
                "foo.com",
                "\"/api/v[0-9]+\"",
                "ImplementationSpecific",
                "api",
                "{number: 80}",
            ),
        );
        let plain = ingress(
            "b",
            "2026-01-02T00:00:00Z",
            "nginx",
            &rule("foo.com", "/web", "Exact", "web", "{number: 80}"),
        );
        let other = ingress(
            "c",
            "2026-01-02T00:00:00Z",
            "nginx",
            &rule("bar.com", "/web", "Exact", "web", "{number: 80}"),
        );
        let t = table(&format!("{regex}{plain}{other}"));
        assert_eq!(goes(&t, "foo.com", "/API/v2/x"), "10.0.0.2:9090");
        assert_eq!(goes(&t, "foo.com", "/api/vx"), "404");
        // The other Ingress's Exact path on the same host is now a case-insensitive prefix regex.
        assert_eq!(goes(&t, "foo.com", "/WEB/more"), "10.0.0.1:8080");
        // Another host is untouched.
        assert_eq!(goes(&t, "bar.com", "/web/more"), "404");
        let broken = annotated(
            "d",
            "2026-01-01T00:00:00Z",
            "nginx.ingress.kubernetes.io/rewrite-target: /$1",
            &rule("foo.com", "\"/a(\"", "ImplementationSpecific", "api", "{number: 80}"),
        );
        let t = table(&broken);
        assert_eq!(goes(&t, "foo.com", "/a("), "404");
        assert!(
            t.problems().iter().any(|p| p.reason == "InvalidPath"),
            "{:?}",
            t.problems()
        );
    }

    #[test]
    fn a_canary_ingress_joins_the_main_route_of_its_host_and_path_whatever_its_age() {
        let canary = "nginx.ingress.kubernetes.io/canary: \"true\", nginx.ingress.kubernetes.io/canary-weight: \"20\"";
        let t = table(&format!(
            "{}{}{}{}{}",
            ingress(
                "any",
                "2026-01-01T00:00:00Z",
                "nginx",
                &rule("\"\"", "/", "Prefix", "web", "{number: 80}")
            ),
            // Older than the main Ingress, and still not the main route.
            annotated(
                "c",
                "2025-01-01T00:00:00Z",
                canary,
                &rule("foo.com", "/", "Prefix", "api", "{number: 80}")
            ),
            ingress(
                "main",
                "2026-01-01T00:00:00Z",
                "nginx",
                &rule("foo.com", "/", "Prefix", "web", "{number: 80}")
            ),
            annotated(
                "c2",
                "2026-02-01T00:00:00Z",
                canary,
                &rule("foo.com", "/", "Prefix", "api", "{number: 80}")
            ),
            annotated(
                "lone",
                "2026-02-01T00:00:00Z",
                canary,
                &rule("bar.com", "/", "Prefix", "api", "{number: 80}")
            ),
        ));
        let route = t.route("foo.com", "/").unwrap();
        assert_eq!(&*route.ingress, "default/main");
        assert_eq!(goes(&t, "foo.com", "/"), "10.0.0.1:8080");
        let canary = route.canary.as_deref().unwrap();
        assert_eq!((&*canary.ingress, canary.split.weight), ("default/c", 20));
        let Target::Service(upstream) = &canary.target else {
            panic!("{:?}", canary.target)
        };
        assert_eq!(upstream.endpoints()[0].to_string(), "10.0.0.2:9090");
        // The lone canary does not hide the rule without a host.
        assert_eq!(goes(&t, "bar.com", "/"), "10.0.0.1:8080");
        assert!(t.route("bar.com", "/").unwrap().canary.is_none());
        let reported: Vec<(&str, &str)> = t
            .problems()
            .iter()
            .map(|p| (p.reason, p.ingress.as_ref().map_or("", |i| i.1.as_str())))
            .collect();
        assert_eq!(reported, [("CanaryConflict", "c2"), ("CanaryWithoutMain", "lone")]);
    }

    #[test]
    fn limits_keep_their_state_across_tables_and_auth_without_its_secret_is_closed() {
        let annotations = "nginx.ingress.kubernetes.io/limit-rps: \"5\", nginx.ingress.kubernetes.io/auth-type: basic, nginx.ingress.kubernetes.io/auth-secret: absent";
        let text = format!(
            "{BASE}---\n{}",
            annotated(
                "a",
                "2026-01-01T00:00:00Z",
                annotations,
                &rule("foo.com", "/", "Prefix", "web", "{number: 80}")
            )
        );
        let config = Config {
            controller: CONTROLLER.into(),
            ..Config::default()
        };
        let build = || Table::build(&Snapshot::new(1, weft_model::parse(&text, "t").unwrap()), &config);
        let (one, two) = (build(), build());
        let limiter = |t: &Table| t.route("foo.com", "/").unwrap().limiter.clone().unwrap();
        assert!(Arc::ptr_eq(&limiter(&one), &limiter(&two)));
        let route = two.route("foo.com", "/").unwrap();
        assert!(matches!(&route.auth, Some(Err(why)) if why.contains("default/absent")));
        assert!(
            two.problems().iter().any(|p| p.reason == "SecretNotFound"),
            "{:?}",
            two.problems()
        );
    }
}
