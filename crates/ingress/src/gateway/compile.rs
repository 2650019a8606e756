//! Gateways of our GatewayClasses and the HTTPRoutes attached to them, compiled into the data plane's part of
//! the routing table (by the pod port each Gateway listener port is served on, see `provision`), and the
//! conditions their statuses should carry.

use super::addresses::{self, Requested};
use super::backendtls;
use super::conditions::{Cond, cond, set};
use super::cors::Cors;
use super::filters::{self, HeaderEdit, Redirect, Rewrite};
use super::hostname;
use super::matching::{Match, PathMatch};
use super::mirror::Mirror;
use super::provision;
use super::retry::Retry;
use crate::annotations::{Annotations, BackendProtocol};
use crate::backend::UpstreamClient;
use crate::metrics::{Metrics, RouteKey, RouteMetrics};
use crate::proxyssl;
use crate::tls;
use crate::upstream::{Index, Upstream};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServicePort};
use k8s_openapi::api::networking::v1::ServiceBackendPort;
use rustls::sign::CertifiedKey;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use weft_gateway::api::{
    BackendRef, GRPCRoute, Gateway, GatewayClass, HTTPRoute, HTTPRouteFilter, HTTPRouteRule, Listener, ListenerSet,
    ParentReference, ReferenceGrant, RouteGroupKind, TLSRoute,
};
use weft_model::Snapshot;

/// What the Gateway API part of the table is built for.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The `controllerName` of the GatewayClasses served (none: no Gateway is).
    pub controller: String,
    /// The controller's own Service (namespace, name): the Services provisioned for Gateways go in its
    /// namespace and select what it selects (none: no Gateway gets an address).
    pub publish: Option<(String, String)>,
}

const GROUP: &str = weft_gateway::api::GROUP;

/// Where a share of a rule's requests goes.
#[derive(Clone, Debug)]
pub enum BackendTarget {
    Service {
        upstream: Arc<Upstream>,
        protocol: BackendProtocol,
        /// The verified TLS client of the Service's BackendTLSPolicy (boxed: a client is large).
        tls: Option<Box<UpstreamClient>>,
    },
    /// A reference that cannot be followed: its share answers 500, with why.
    Invalid(Arc<str>),
}

#[derive(Clone, Debug)]
pub struct Backend {
    pub weight: u32,
    pub target: BackendTarget,
    /// The backendRef's own RequestHeaderModifier.
    pub request_headers: Option<HeaderEdit>,
    /// How the proxy forwards to it: the backend protocol and the rewritten Host.
    pub settings: Arc<Annotations>,
}

/// One rule of a route as the data plane runs it.
#[derive(Debug)]
pub struct Rule {
    /// `namespace/name` of the route.
    pub route: Arc<str>,
    pub request_headers: Option<HeaderEdit>,
    pub response_headers: Option<HeaderEdit>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
    pub cors: Option<Cors>,
    /// RequestMirror filters whose backend can be followed.
    pub mirrors: Vec<Mirror>,
    pub backends: Vec<Backend>,
    /// `timeouts.request`: the whole request, to the response's head (504 after it; 0: none).
    pub timeout: Option<Duration>,
    /// `retry` (GEP-1731).
    pub retry: Option<Retry>,
    pub metrics: Arc<RouteMetrics>,
}

impl Rule {
    /// The backend of a roll in 0..total weight; none when every weight is 0 (500).
    pub fn pick(&self, roll: u32) -> Option<&Backend> {
        let mut left = roll;
        self.backends.iter().find(|b| {
            if left < b.weight {
                true
            } else {
                left -= b.weight;
                false
            }
        })
    }

    pub fn total_weight(&self) -> u32 {
        self.backends.iter().map(|b| b.weight).sum()
    }

    /// The backend whose endpoint the persistent session of a request with `headers` names (sessionPersistence),
    /// whatever the weights (but not one of weight 0).
    pub fn session_backend(&self, headers: &http::HeaderMap) -> Option<&Backend> {
        self.backends
            .iter()
            .filter(|b| b.weight > 0)
            .find(|b| match (&b.target, &b.settings.affinity) {
                (BackendTarget::Service { upstream, .. }, Some(affinity)) => affinity.holds(upstream, headers),
                _ => false,
            })
    }
}

#[derive(Debug)]
pub struct Entry {
    pub matcher: Match,
    pub rule: Arc<Rule>,
    /// Route age, route, rule index, match index: the tie-breakers after the match's own precedence.
    order: (String, String, usize, usize),
}

/// The routes of one listener, by host pattern (`""`: any host).
#[derive(Debug, Default)]
pub struct ListenerRoutes {
    pub name: String,
    pub hostname: Option<String>,
    pub handling: Handling,
    hosts: HashMap<String, Vec<Entry>>,
    certificates: Vec<Arc<CertifiedKey>>,
}

impl ListenerRoutes {
    /// The entries for `host`, most specific host pattern first, each in precedence order.
    pub fn candidates<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        hostname::candidates(host)
            .filter_map(|pattern| self.hosts.get(&pattern))
            .flatten()
    }

    pub fn certificate(&self) -> Option<&Arc<CertifiedKey>> {
        self.certificates.first()
    }
}

/// What a listener does with a connection, TLS terminated or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Handling {
    /// HTTP and HTTPS listeners: HTTP requests, routed by HTTPRoutes and GRPCRoutes.
    #[default]
    Requests,
    /// TLS listeners in mode Terminate: the plaintext stream to a TLSRoute's backend.
    Terminate,
    /// TLS listeners in mode Passthrough: the TLS stream to a TLSRoute's backend as it is.
    Passthrough,
}

/// How a pod port serves its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// HTTP listeners: plain HTTP/1.1 and h2c.
    Http,
    /// HTTPS listeners: TLS terminated with the listeners' certificates.
    Https,
    /// TLS listeners in mode Passthrough: the ClientHello's SNI picks a TLSRoute, whose backend gets the TLS
    /// connection as it is (`passthrough`).
    Passthrough,
    /// TLS listeners of more than one [`Handling`] (or in mode Terminate): the ClientHello's SNI picks the
    /// listener, which handles the connection its way (`sni`).
    BySni,
}

/// One listener port of one Gateway, as served on a pod port.
#[derive(Debug)]
pub struct Port {
    /// `namespace/name` of the Gateway.
    pub gateway: Arc<str>,
    /// The listener port clients dial (for redirects).
    pub port: u16,
    pub serving: Serving,
    /// Most specific hostname first (exact, longer wildcards, none).
    pub listeners: Vec<ListenerRoutes>,
}

impl Port {
    /// The listener a connection or request for `host` belongs to.
    pub fn listener(&self, host: &str) -> Option<&ListenerRoutes> {
        self.listeners
            .iter()
            .find(|l| l.hostname.as_deref().is_none_or(|h| hostname::covers(h, host)))
    }

    /// The HTTP or HTTPS listener a request for `host` belongs to (on a port shared with TLS listeners, theirs
    /// are not for requests).
    pub fn requests_listener(&self, host: &str) -> Option<&ListenerRoutes> {
        self.listeners.iter().find(|l| {
            l.handling == Handling::Requests && l.hostname.as_deref().is_none_or(|h| hostname::covers(h, host))
        })
    }

    /// Whether a request for `host` on a TLS connection made for server name `sni` is misdirected (421): its
    /// host belongs to another of the port's HTTPS listeners than the one the server name picked, as when an
    /// HTTP/2 client reuses a connection for another name its certificate covers (RFC 9113 §9.1.1). A host no
    /// listener covers is not (404), nor is a server name none covers.
    pub fn misdirected(&self, sni: &str, host: &str) -> bool {
        if sni.eq_ignore_ascii_case(host) {
            return false;
        }
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        match (self.requests_listener(&sni), self.requests_listener(host)) {
            (Some(by_sni), Some(by_host)) => !std::ptr::eq(by_sni, by_host),
            _ => false,
        }
    }
}

/// Conditions of one listener, and how many routes it has.
#[derive(Clone, Debug, Default)]
pub struct ListenerState {
    pub name: String,
    pub supported_kinds: Vec<RouteGroupKind>,
    pub attached: i32,
    pub conditions: Vec<Cond>,
}

#[derive(Clone, Debug, Default)]
pub struct GatewayState {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub listeners: Vec<ListenerState>,
    pub addresses: Vec<String>,
    /// The ListenerSets its `allowedListeners` let in.
    pub attached_listener_sets: i32,
}

/// A ListenerSet whose parent is one of our Gateways: its conditions and its listeners'.
#[derive(Clone, Debug, Default)]
pub struct ListenerSetState {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub listeners: Vec<ListenerState>,
}

#[derive(Clone, Debug)]
pub struct ParentState {
    pub parent: ParentReference,
    pub conditions: Vec<Cond>,
}

/// A BackendTLSPolicy in use: its conditions for each Gateway whose routes send to its Service.
#[derive(Clone, Debug)]
pub struct PolicyState {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub ancestors: Vec<(ParentReference, Vec<Cond>)>,
}

#[derive(Clone, Debug)]
pub struct RouteState {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub parents: Vec<ParentState>,
}

/// The Gateway API part of a routing table.
#[derive(Debug, Default)]
pub struct Gateways {
    ports: HashMap<u16, Arc<Port>>,
    pub classes: Vec<(String, Option<i64>, Vec<Cond>)>,
    pub gateways: Vec<GatewayState>,
    pub listener_sets: Vec<ListenerSetState>,
    pub routes: Vec<RouteState>,
    pub policies: Vec<PolicyState>,
    /// The provisioned Services' wanted shape, for the controller to write.
    pub services: Vec<Service>,
}

impl Gateways {
    /// The Gateway listener port served on pod port `port`.
    pub fn port(&self, port: u16) -> Option<&Arc<Port>> {
        self.ports.get(&port)
    }

    /// The pod ports to listen on, and how each serves.
    pub fn pod_ports(&self) -> BTreeMap<u16, Serving> {
        self.ports.iter().map(|(p, port)| (*p, port.serving)).collect()
    }
}

fn decode<T: serde::de::DeserializeOwned>(snapshot: &Snapshot, kind: &str) -> Vec<T> {
    snapshot
        .of_kind(kind)
        .filter_map(|o| serde_json::from_value(o.to_value()).ok())
        .collect()
}

fn id(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The ReferenceGrants of a snapshot: whether `from` (group, kind, namespace) may refer to `to` (group, kind,
/// namespace, name).
struct Grants(Vec<ReferenceGrant>);

impl Grants {
    fn allow(&self, from: (&str, &str, &str), to: (&str, &str, &str, &str)) -> bool {
        if from.2 == to.2 {
            return true;
        }
        self.0.iter().any(|g| {
            g.metadata.namespace.as_deref() == Some(to.2)
                && g.spec
                    .from
                    .iter()
                    .any(|f| (f.group.as_str(), f.kind.as_str(), f.namespace.as_str()) == from)
                && g.spec.to.iter().any(|t| {
                    (t.group.as_str(), t.kind.as_str()) == (to.0, to.1)
                        && t.name.as_deref().is_none_or(|n| n.is_empty() || n == to.3)
                })
        })
    }
}

/// A listener as compiled: whether it can take routes at all, its certificates.
struct Compiled<'a> {
    spec: &'a Listener,
    /// The ListenerSet (namespace, name) it comes from; none: the Gateway's own.
    owner: Option<(String, String)>,
    usable: bool,
    kinds: Vec<RouteGroupKind>,
    certificates: Vec<Arc<CertifiedKey>>,
    state: ListenerState,
    routes: ListenerRoutes,
}

fn kind(kind: &str) -> RouteGroupKind {
    RouteGroupKind {
        group: Some(GROUP.into()),
        kind: kind.into(),
    }
}

pub struct Compiler<'a> {
    pub settings: &'a Settings,
    pub snapshot: &'a Snapshot,
    pub index: &'a Index<'a>,
    pub metrics: &'a Metrics,
    /// The route metrics made, by their names.
    pub live: &'a mut BTreeSet<RouteKey>,
    /// Where BackendTLSPolicies' clients live across tables (the proxy-ssl clients'), and those in use.
    pub clients: &'a proxyssl::Clients,
    pub clients_used: &'a mut BTreeSet<proxyssl::Key>,
}

/// A BackendTLSPolicy a route's backend follows: the policy, its generation, and its problem.
type PolicyUse = ((String, String), Option<i64>, Option<backendtls::Problem>);

impl Compiler<'_> {
    pub fn compile(mut self) -> Gateways {
        let mut out = Gateways::default();
        if self.settings.controller.is_empty() {
            return out;
        }
        let snapshot = self.snapshot;
        let grants = Grants(decode(snapshot, "ReferenceGrant"));
        let namespaces: HashMap<String, BTreeMap<String, String>> = decode::<Namespace>(snapshot, "Namespace")
            .into_iter()
            .map(|n| {
                (
                    n.metadata.name.unwrap_or_default(),
                    n.metadata.labels.unwrap_or_default(),
                )
            })
            .collect();
        let classes: Vec<GatewayClass> = decode(snapshot, "GatewayClass");
        let ours: BTreeSet<String> = classes
            .iter()
            .filter(|c| c.spec.controller_name == self.settings.controller)
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect();
        for class in classes
            .iter()
            .filter(|c| c.spec.controller_name == self.settings.controller)
        {
            let c = match &class.spec.parameters_ref {
                Some(_) => cond("Accepted", false, "InvalidParameters", "weft takes no parameters"),
                None => cond("Accepted", true, "Accepted", "served by weft ingress"),
            };
            out.classes.push((
                class.metadata.name.clone().unwrap_or_default(),
                class.metadata.generation,
                vec![c, cond("SupportedVersion", true, "SupportedVersion", "v1")],
            ));
        }
        let mut gateways: Vec<Gateway> = decode(snapshot, "Gateway");
        gateways.retain(|g| ours.contains(&g.spec.gateway_class_name));
        gateways.sort_by_key(|g| id(&g.metadata));
        let (home, own) = self.settings.publish.clone().unwrap_or_default();
        let services: Vec<Service> = decode(snapshot, "Service");
        let selector = services
            .iter()
            .find(|s| id(&s.metadata) == (home.clone(), own.clone()))
            .and_then(|s| s.spec.as_ref()?.selector.clone());
        let existing: Vec<Service> = services
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(&home) && provision::owner(s).is_some())
            .collect();
        let provisioning = selector.map(|selector| (home, selector));
        let sets = listener_sets(snapshot, &gateways, &namespaces);
        let mut compiled: Vec<(GatewayState, Vec<Compiled>)> = gateways
            .iter()
            .map(|g| {
                let mine: Vec<&SetIn> = sets.iter().filter(|s| s.parent == id(&g.metadata)).collect();
                self.gateway(g, &mine, &grants, &existing, provisioning.as_ref(), &mut out.services)
            })
            .collect();
        // HTTPRoutes, then GRPCRoutes and TLSRoutes (as HTTPRoute rules), each kind oldest first.
        let mut routes: Vec<HTTPRoute> = decode(snapshot, "HTTPRoute");
        routes.sort_by_key(|r| age(&r.metadata));
        let mut grpc: Vec<GRPCRoute> = decode(snapshot, "GRPCRoute");
        grpc.sort_by_key(|r| age(&r.metadata));
        let default_rules = [HTTPRouteRule::default()];
        let http = routes.iter().map(|r| {
            let rules = r.spec.rules.as_deref().unwrap_or(&default_rules);
            (
                "HTTPRoute",
                &r.metadata,
                &r.spec.parent_refs,
                &r.spec.hostnames,
                Cow::Borrowed(rules),
            )
        });
        let grpc = grpc.iter().map(|r| {
            let rules: Vec<HTTPRouteRule> = r.spec.rules.iter().map(super::grpc::as_http).collect();
            (
                "GRPCRoute",
                &r.metadata,
                &r.spec.parent_refs,
                &r.spec.hostnames,
                Cow::Owned(rules),
            )
        });
        let mut tls: Vec<TLSRoute> = decode(snapshot, "TLSRoute");
        tls.sort_by_key(|r| age(&r.metadata));
        let tls = tls.iter().map(|r| {
            let rules: Vec<HTTPRouteRule> = r.spec.rules.iter().map(super::passthrough::as_http).collect();
            (
                "TLSRoute",
                &r.metadata,
                &r.spec.parent_refs,
                &r.spec.hostnames,
                Cow::Owned(rules),
            )
        });
        let policies = backendtls::Policies::new(snapshot);
        let mut policy_states: BTreeMap<(String, String), PolicyState> = BTreeMap::new();
        for (kind, meta, parent_refs, hostnames, rules) in http.chain(grpc).chain(tls) {
            let (namespace, name) = id(meta);
            let route: Arc<str> = format!("{namespace}/{name}").into();
            let mut used = Vec::new();
            let compiled_rules = self.rules(kind, &namespace, &route, &rules, &grants, (&policies, &mut used));
            let state = self.attach(
                kind,
                meta,
                parent_refs,
                hostnames,
                compiled_rules,
                &namespaces,
                &mut compiled,
            );
            // The Gateways this route is accepted by are where its backends' policies take effect.
            let accepted = state
                .parents
                .iter()
                .filter(|p| p.conditions.iter().any(|c| c.type_ == "Accepted" && c.status));
            for parent in accepted {
                let gateway = parent.parent.namespace.clone().unwrap_or_default();
                let ancestor = backendtls::ancestor(&gateway, &parent.parent.name);
                for ((ns, name), generation, problem) in &used {
                    let policy = policy_states
                        .entry((ns.clone(), name.clone()))
                        .or_insert_with(|| PolicyState {
                            namespace: ns.clone(),
                            name: name.clone(),
                            generation: *generation,
                            ancestors: Vec::new(),
                        });
                    if policy.ancestors.iter().all(|(a, _)| *a != ancestor) {
                        policy
                            .ancestors
                            .push((ancestor.clone(), backendtls::conditions(problem.as_ref())));
                    }
                }
            }
            if !state.parents.is_empty() {
                out.routes.push(state);
            }
        }
        out.policies = policy_states.into_values().collect();
        for (state, listeners) in compiled {
            let gateway: Arc<str> = format!("{}/{}", state.namespace, state.name).into();
            let service = existing
                .iter()
                .find(|s| provision::owner(s) == Some((&state.namespace, &state.name)));
            let mut by_port: BTreeMap<i32, Vec<Compiled>> = BTreeMap::new();
            let mut listener_states = Vec::new();
            let mut set_states: BTreeMap<(String, String), Vec<ListenerState>> = BTreeMap::new();
            for mut l in listeners {
                l.state.attached = l.state.attached.max(0);
                match &l.owner {
                    None => listener_states.push(l.state.clone()),
                    Some(owner) => set_states.entry(owner.clone()).or_default().push(l.state.clone()),
                }
                if l.usable {
                    by_port.entry(l.spec.port).or_default().push(l);
                }
            }
            let accepted = state.conditions.iter().any(|c| c.type_ == "Accepted" && c.status);
            for set in sets
                .iter()
                .filter(|s| s.parent == (state.namespace.clone(), state.name.clone()))
            {
                let listeners = set_states.remove(&set.id).unwrap_or_default();
                out.listener_sets.push(set.state(accepted, listeners));
            }
            for (port, mut ls) in by_port {
                let Some(pod_port) = service.and_then(|s| provision::pod_port(s, port, &existing)) else {
                    continue;
                };
                // Listeners sharing a port are all HTTP or all over TLS (`gateway`).
                let handlings: BTreeSet<(bool, Handling)> = ls
                    .iter()
                    .map(|l| (family(l.spec) == Family::Http, handling(l.spec)))
                    .collect();
                let serving = match handlings.into_iter().collect::<Vec<_>>()[..] {
                    [] | [(true, _)] => Serving::Http,
                    [(false, Handling::Requests)] => Serving::Https,
                    [(false, Handling::Passthrough)] => Serving::Passthrough,
                    _ => Serving::BySni,
                };
                // Most specific hostname first: exact names, then wildcards by length, then none.
                ls.sort_by_key(|l| match l.spec.hostname.as_deref() {
                    Some(h) if !h.starts_with('*') => (0, usize::MAX - h.len()),
                    Some(h) => (1, usize::MAX - h.len()),
                    None => (2, 0),
                });
                let listeners = ls
                    .into_iter()
                    .map(|mut l| {
                        for entries in l.routes.hosts.values_mut() {
                            entries
                                .sort_by(|a, b| a.matcher.precedence(&b.matcher).then_with(|| a.order.cmp(&b.order)));
                        }
                        l.routes.certificates = l.certificates;
                        l.routes
                    })
                    .collect();
                out.ports.insert(
                    pod_port,
                    Arc::new(Port {
                        gateway: gateway.clone(),
                        port: port as u16,
                        serving,
                        listeners,
                    }),
                );
            }
            let mut state = state;
            state.listeners = listener_states;
            state.attached_listener_sets = sets
                .iter()
                .filter(|s| s.allowed && s.parent == (state.namespace.clone(), state.name.clone()))
                .count() as i32;
            out.gateways.push(state);
        }
        out
    }

    /// A Gateway's listeners (its own, then those of the ListenerSets `sets` it lets in) and conditions; adds its
    /// provisioned Service's wanted shape to `services`.
    fn gateway<'g>(
        &self,
        g: &'g Gateway,
        sets: &[&'g SetIn],
        grants: &Grants,
        existing: &[Service],
        provisioning: Option<&(String, BTreeMap<String, String>)>,
        services: &mut Vec<Service>,
    ) -> (GatewayState, Vec<Compiled<'g>>) {
        let (namespace, name) = id(&g.metadata);
        let mut listeners: Vec<Compiled> = g
            .spec
            .listeners
            .iter()
            .map(|l| self.listener(&namespace, l, grants))
            .collect();
        for set in sets.iter().copied().filter(|s| s.allowed) {
            for l in &set.listeners {
                let mut compiled = self.listener(&set.id.0, l, grants);
                compiled.owner = Some(set.id.clone());
                listeners.push(compiled);
            }
        }
        // Listeners sharing a port must be all HTTP or all over TLS, and differ by hostname. Between a Gateway's
        // own listeners both conflict; a ListenerSet's conflicts with those before it (the Gateway's, then older
        // sets'), which keep theirs.
        let conflicts: Vec<Option<&'static str>> = listeners
            .iter()
            .enumerate()
            .map(|(i, mine)| {
                let mut conflict = None;
                let others = listeners
                    .iter()
                    .enumerate()
                    .filter(|(j, o)| *j != i && o.spec.port == mine.spec.port && (*j < i || o.owner == mine.owner));
                for (_, other) in others {
                    let (other, mine) = (other.spec, mine.spec);
                    if (family(other) == Family::Http) != (family(mine) == Family::Http) {
                        conflict = Some("ProtocolConflict");
                    } else if other.hostname == mine.hostname && conflict.is_none() {
                        conflict = Some("HostnameConflict");
                    }
                }
                conflict
            })
            .collect();
        for (l, conflict) in listeners.iter_mut().zip(conflicts) {
            match conflict {
                Some(reason) => {
                    l.usable = false;
                    let message = "another listener on the port conflicts";
                    set(&mut l.state.conditions, cond("Conflicted", true, reason, message));
                    set(
                        &mut l.state.conditions,
                        cond("Programmed", false, "Invalid", "the listener conflicts"),
                    );
                }
                None => set(&mut l.state.conditions, cond("Conflicted", false, "NoConflicts", "")),
            }
        }
        let ports: BTreeSet<i32> = listeners.iter().filter(|l| l.usable).map(|l| l.spec.port).collect();
        let requested = match g.spec.addresses.is_empty() {
            true => Requested::Any,
            false => addresses::requested(&g.spec.addresses, &|ip| self.in_use(ip, &namespace, &name)),
        };
        let asked = match requested {
            Requested::Ip(ip) => Some(ip),
            _ => None,
        };
        if let Some((home, selector)) = provisioning {
            // Services wanted for the Gateways before this one count as taken too.
            let known: Vec<Service> = existing.iter().chain(services.iter()).cloned().collect();
            let gateway = (namespace.as_str(), name.as_str());
            services.push(provision::service(home, selector, gateway, &ports, asked, &known));
        }
        // The Service's address, once it is the one asked for (none while an unusable one is).
        let address: Vec<String> = existing
            .iter()
            .find(|s| provision::owner(s) == Some((&namespace, &name)))
            .map(provision::addresses)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| match &requested {
                Requested::Any => true,
                Requested::Ip(ip) => a.parse::<std::net::IpAddr>().is_ok_and(|a| a == *ip),
                Requested::Unsupported(_) | Requested::Unusable(_) => false,
            })
            .collect();
        // The Gateway's acceptance is its own listeners'.
        let own = listeners.iter().filter(|l| l.owner.is_none());
        let valid = own
            .clone()
            .filter(|l| l.state.conditions.iter().any(|c| c.type_ == "Accepted" && c.status))
            .count();
        let total = own.count();
        let mut conditions = Vec::new();
        let accepted = if g
            .spec
            .infrastructure
            .as_ref()
            .is_some_and(|i| i.parameters_ref.is_some())
        {
            cond(
                "Accepted",
                false,
                "InvalidParameters",
                "weft takes no infrastructure parameters",
            )
        } else if let Requested::Unsupported(why) = &requested {
            cond("Accepted", false, "UnsupportedAddress", why.clone())
        } else if valid == total {
            cond("Accepted", true, "Accepted", "")
        } else if valid > 0 {
            cond("Accepted", true, "ListenersNotValid", "some listeners are not valid")
        } else {
            cond("Accepted", false, "ListenersNotValid", "no listener is valid")
        };
        let accepted_ok = accepted.status;
        conditions.push(accepted);
        conditions.push(match (accepted_ok, &requested, address.is_empty()) {
            (false, _, _) => cond("Programmed", false, "Invalid", "the Gateway is not accepted"),
            (true, Requested::Unusable(why), _) => cond("Programmed", false, "AddressNotUsable", why.clone()),
            (true, _, true) => cond(
                "Programmed",
                false,
                "AddressNotAssigned",
                "waiting for the LoadBalancer's address",
            ),
            (true, _, false) => cond("Programmed", true, "Programmed", ""),
        });
        if !accepted_ok {
            for l in &mut listeners {
                l.usable = false;
            }
        }
        let state = GatewayState {
            namespace,
            name,
            generation: g.metadata.generation,
            conditions,
            listeners: Vec::new(),
            addresses: address,
            attached_listener_sets: 0,
        };
        (state, listeners)
    }

    /// Whether a Service other than Gateway `namespace/name`'s own has load balancer address `ip` (its status's,
    /// or the one it asks for).
    fn in_use(&self, ip: std::net::IpAddr, namespace: &str, name: &str) -> bool {
        decode::<Service>(self.snapshot, "Service")
            .iter()
            .filter(|s| provision::owner(s) != Some((namespace, name)))
            .any(|s| {
                let asked = s.spec.as_ref().and_then(|spec| spec.load_balancer_ip.as_deref());
                asked
                    .into_iter()
                    .chain(provision::addresses(s).iter().map(String::as_str))
                    .any(|a| a.parse::<std::net::IpAddr>().is_ok_and(|a| a == ip))
            })
    }

    fn listener<'l>(&self, namespace: &str, l: &'l Listener, grants: &Grants) -> Compiled<'l> {
        let mut conditions = Vec::new();
        let defaults: &[&str] = match (l.protocol.as_str(), family(l)) {
            ("HTTP" | "HTTPS", _) => &["HTTPRoute", "GRPCRoute"],
            ("TLS", _) => &["TLSRoute"],
            _ => &[],
        };
        let supported_protocol = matches!(l.protocol.as_str(), "HTTP" | "HTTPS" | "TLS");
        let asked = l
            .allowed_routes
            .as_ref()
            .map(|a| a.kinds.as_slice())
            .unwrap_or_default();
        let mut kinds = Vec::new();
        let mut invalid_kind = false;
        if asked.is_empty() {
            kinds.extend(defaults.iter().map(|k| kind(k)));
        } else {
            for k in asked {
                let group_ok = k.group.as_deref().is_none_or(|g| g == GROUP);
                if group_ok && defaults.contains(&k.kind.as_str()) {
                    kinds.push(kind(&k.kind));
                } else {
                    invalid_kind = true;
                }
            }
        }
        let mut certificates = Vec::new();
        let mut refs = cond("ResolvedRefs", true, "ResolvedRefs", "");
        if invalid_kind {
            refs = cond(
                "ResolvedRefs",
                false,
                "InvalidRouteKinds",
                "a kind in allowedRoutes is not supported",
            );
        }
        if matches!(l.protocol.as_str(), "HTTPS" | "TLS") && family(l) == Family::Terminate {
            let tls = l.tls.as_ref();
            let certificate_refs = tls.map(|t| t.certificate_refs.as_slice()).unwrap_or_default();
            if l.protocol == "HTTPS" && tls.and_then(|t| t.mode.as_deref()).is_some_and(|m| m != "Terminate") {
                set(
                    &mut conditions,
                    cond("Accepted", false, "UnsupportedValue", "HTTPS listeners terminate TLS"),
                );
            }
            for r in certificate_refs {
                let ns = r.namespace.as_deref().unwrap_or(namespace);
                let is_secret =
                    r.group.as_deref().unwrap_or("").is_empty() && r.kind.as_deref().unwrap_or("Secret") == "Secret";
                let problem = if !is_secret {
                    Some(("InvalidCertificateRef", format!("{} is not a Secret", r.name)))
                } else if !grants.allow((GROUP, "Gateway", namespace), ("", "Secret", ns, &r.name)) {
                    Some((
                        "RefNotPermitted",
                        format!("no ReferenceGrant lets the Gateway use Secret {ns}/{}", r.name),
                    ))
                } else {
                    let key = weft_model::Key::new("Secret", Some(ns), &r.name);
                    let secret = self
                        .snapshot
                        .get(&key)
                        .and_then(|o| serde_json::from_value::<Secret>(o.to_value()).ok());
                    match secret.map(|s| tls::from_secret(&s)) {
                        None => Some((
                            "InvalidCertificateRef",
                            format!("Secret {ns}/{} does not exist", r.name),
                        )),
                        Some(Err(e)) => Some(("InvalidCertificateRef", format!("Secret {ns}/{}: {e}", r.name))),
                        Some(Ok(key)) => {
                            certificates.push(Arc::new(key));
                            None
                        }
                    }
                };
                if let Some((reason, message)) = problem
                    && refs.status
                {
                    refs = cond("ResolvedRefs", false, reason, message);
                }
            }
            if certificate_refs.is_empty() && refs.status {
                refs = cond(
                    "ResolvedRefs",
                    false,
                    "InvalidCertificateRef",
                    "a listener terminating TLS needs certificateRefs",
                );
            }
        }
        if !supported_protocol {
            set(
                &mut conditions,
                cond(
                    "Accepted",
                    false,
                    "UnsupportedProtocol",
                    format!("protocol {} is not served", l.protocol),
                ),
            );
        } else if conditions.is_empty() {
            set(&mut conditions, cond("Accepted", true, "Accepted", ""));
        }
        let accepted = conditions.iter().all(|c| c.status);
        let programmed = accepted && refs.status;
        conditions.push(refs);
        conditions.push(if programmed {
            cond("Programmed", true, "Programmed", "")
        } else {
            cond("Programmed", false, "Invalid", "the listener is not valid")
        });
        Compiled {
            spec: l,
            owner: None,
            usable: programmed,
            kinds: kinds.clone(),
            certificates,
            state: ListenerState {
                name: l.name.clone(),
                supported_kinds: kinds,
                attached: 0,
                conditions,
            },
            routes: ListenerRoutes {
                name: l.name.clone(),
                hostname: l.hostname.clone(),
                handling: handling(l),
                ..ListenerRoutes::default()
            },
        }
    }

    /// A route (its kind, metadata, parentRefs, hostnames and compiled rules) attached to the listeners that
    /// take it, and its parents' conditions.
    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        kind: &'static str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        parent_refs: &[ParentReference],
        hostnames: &[String],
        compiled: CompiledRules,
        namespaces: &HashMap<String, BTreeMap<String, String>>,
        gateways: &mut [(GatewayState, Vec<Compiled>)],
    ) -> RouteState {
        let (namespace, name) = id(meta);
        let route_id: Arc<str> = format!("{namespace}/{name}").into();
        let ts = meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let mut state = RouteState {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
            generation: meta.generation,
            parents: Vec::new(),
        };
        for parent in parent_refs {
            if parent.group() != GROUP || !matches!(parent.kind(), "Gateway" | "ListenerSet") {
                continue;
            }
            let gw_ns = parent.namespace.clone().unwrap_or_else(|| namespace.clone());
            // A Gateway's own listeners, or those of a ListenerSet its Gateway let in.
            let owner = (parent.kind() == "ListenerSet").then(|| (gw_ns.clone(), parent.name.clone()));
            let Some((_, listeners)) = gateways.iter_mut().find(|(g, ls)| match &owner {
                None => g.namespace == gw_ns && g.name == parent.name,
                Some(owner) => ls.iter().any(|l| l.owner.as_ref() == Some(owner)),
            }) else {
                continue;
            };
            let mut by_ref: Vec<&mut Compiled> = listeners
                .iter_mut()
                .filter(|l| l.owner == owner)
                .filter(|l| parent.section_name.as_ref().is_none_or(|s| *s == l.spec.name))
                .filter(|l| parent.port.is_none_or(|p| p == l.spec.port))
                .collect();
            let accepted = if by_ref.is_empty() {
                cond(
                    "Accepted",
                    false,
                    "NoMatchingParent",
                    "no listener of the Gateway has this sectionName/port",
                )
            } else {
                let ns_labels = namespaces.get(&namespace);
                by_ref.retain(|l| {
                    let kind_ok = l.kinds.iter().any(|k| k.kind == kind);
                    let from = l.spec.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
                    let ns_ok = match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
                        "All" => true,
                        "Selector" => from
                            .and_then(|f| f.selector.as_ref())
                            .is_some_and(|s| selector_matches(s, ns_labels)),
                        // The namespace of the listener's Gateway or ListenerSet.
                        _ => l.owner.as_ref().map_or(&gw_ns, |o| &o.0) == &namespace,
                    };
                    kind_ok && ns_ok && l.state.conditions.iter().any(|c| c.type_ == "Accepted" && c.status)
                });
                if by_ref.is_empty() {
                    cond(
                        "Accepted",
                        false,
                        "NotAllowedByListeners",
                        "no listener allows this route",
                    )
                } else if compiled.rules.is_empty() && !compiled.dropped.is_empty() {
                    // Fully invalid: IncompatibleFilters when that is what every rule has.
                    let incompatible = compiled.dropped.iter().all(|(r, _)| *r == "IncompatibleFilters");
                    let reason = if incompatible {
                        "IncompatibleFilters"
                    } else {
                        "UnsupportedValue"
                    };
                    cond(
                        "Accepted",
                        false,
                        reason,
                        format!("no rule can be served: {}", dropped(&compiled)),
                    )
                } else {
                    let mut attached = 0;
                    for l in by_ref {
                        let hosts = hostname::effective(l.spec.hostname.as_deref(), hostnames);
                        if hosts.is_empty() {
                            continue;
                        }
                        attached += 1;
                        l.state.attached += 1;
                        for host in hosts {
                            let entries = l.routes.hosts.entry(host).or_default();
                            for (r, (matches, rule)) in compiled.rules.iter().enumerate() {
                                for (m, matcher) in matches.iter().enumerate() {
                                    entries.push(Entry {
                                        matcher: matcher.clone(),
                                        rule: rule.clone(),
                                        order: (ts.clone(), route_id.to_string(), r, m),
                                    });
                                }
                            }
                        }
                    }
                    if attached == 0 {
                        cond(
                            "Accepted",
                            false,
                            "NoMatchingListenerHostname",
                            "no listener hostname matches the route's",
                        )
                    } else {
                        cond("Accepted", true, "Accepted", "")
                    }
                }
            };
            // Some rules left out of an accepted route: PartiallyInvalid (only ever True), the "Dropped Rule"
            // way (the route's valid rules are served at its current generation).
            let partially = (accepted.status && !compiled.dropped.is_empty()).then(|| {
                let message = format!("Dropped Rule: {}", dropped(&compiled));
                cond("PartiallyInvalid", true, "UnsupportedValue", message)
            });
            let mut conditions = vec![accepted, compiled.resolved.clone()];
            conditions.extend(partially);
            state.parents.push(ParentState {
                parent: ParentReference {
                    group: Some(GROUP.into()),
                    kind: Some(parent.kind().into()),
                    namespace: Some(gw_ns),
                    ..parent.clone()
                },
                conditions,
            });
        }
        state
    }

    /// A route's rules compiled (those that cannot be are left out), and its ResolvedRefs condition.
    fn rules(
        &mut self,
        kind: &'static str,
        namespace: &str,
        route: &Arc<str>,
        rules: &[HTTPRouteRule],
        grants: &Grants,
        (policies, used): (&backendtls::Policies, &mut Vec<PolicyUse>),
    ) -> CompiledRules {
        let mut resolved = cond("ResolvedRefs", true, "ResolvedRefs", "");
        let mut out = Vec::new();
        let mut dropped = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let rule_name = rule.name.clone().unwrap_or_else(|| format!("rule-{i}"));
            let default_match = [Default::default()];
            let matches_spec = rule
                .matches
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or(&default_match);
            let matches = match matches_spec.iter().map(Match::compile).collect::<Result<Vec<_>, _>>() {
                Ok(matches) => matches,
                Err(e) => {
                    dropped.push(("UnsupportedValue", format!("{rule_name} ({e})")));
                    continue;
                }
            };
            let prefix = matches.iter().find_map(|m| match &m.path {
                PathMatch::Plain(p) => filters::prefix_of(p),
                PathMatch::Regex(_) => None,
            });
            // The rule's filters and its backendRefs' own.
            let compiled = Filters::compile(&rule.filters, prefix).and_then(|parts| {
                let own = rule
                    .backend_refs
                    .iter()
                    .map(|b| Filters::compile(&b.filters, prefix).map(|f| f.request_headers))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((parts, own))
            });
            let (parts, own_filters) = match compiled {
                Ok(compiled) => compiled,
                Err(e) => {
                    dropped.push((e.reason(), format!("{rule_name} ({e})")));
                    continue;
                }
            };
            let mut mirrors = Vec::new();
            for filter in rule.filters.iter().filter(|f| f.type_ == "RequestMirror") {
                let Some(m) = &filter.request_mirror else { continue };
                match self.backend(kind, namespace, &m.backend_ref, grants, (policies, used)) {
                    (
                        BackendTarget::Service {
                            upstream,
                            protocol,
                            tls,
                        },
                        _,
                    ) => {
                        mirrors.push(Mirror::new(m, upstream, protocol, tls));
                    }
                    (BackendTarget::Invalid(_), Some((reason, message))) if resolved.status => {
                        resolved = cond("ResolvedRefs", false, reason, message);
                    }
                    (BackendTarget::Invalid(_), _) => {}
                }
            }
            let metrics_route = format!("{}/{route}", kind.to_ascii_lowercase());
            let affinity = rule
                .session_persistence
                .as_ref()
                .map(|s| super::session::affinity(s, &metrics_route, i));
            let mut backends = Vec::new();
            for (b, own) in rule.backend_refs.iter().zip(own_filters) {
                let (target, problem) = self.backend(kind, namespace, &b.backend, grants, (policies, used));
                if let Some((reason, message)) = problem
                    && resolved.status
                {
                    resolved = cond("ResolvedRefs", false, reason, message);
                }
                let protocol = match &target {
                    BackendTarget::Service { protocol, .. } => *protocol,
                    BackendTarget::Invalid(_) => BackendProtocol::Http,
                };
                // `timeouts.backendRequest`: each try's wait for the backend.
                let backend_timeout = rule
                    .timeouts
                    .as_ref()
                    .and_then(|t| t.backend_request.as_deref())
                    .and_then(weft_gateway::duration::parse)
                    .filter(|d| !d.is_zero());
                let settings = Arc::new(Annotations {
                    backend_protocol: protocol,
                    read_timeout: backend_timeout.unwrap_or(Annotations::default().read_timeout),
                    upstream_vhost: parts.rewrite.as_ref().and_then(|r| r.hostname.clone()),
                    affinity: affinity.clone(),
                    ..Annotations::default()
                });
                backends.push(Backend {
                    weight: b.backend.weight(),
                    target,
                    request_headers: own,
                    settings,
                });
            }
            // An ExtensionRef filter cannot be followed (weft serves no extension kinds): the rule's requests are
            // answered 500 rather than served without it.
            if let Some(extension) = &parts.extension {
                let why = format!("extension filter {extension} is not served");
                mirrors.clear();
                if resolved.status {
                    resolved = cond("ResolvedRefs", false, "InvalidKind", why.clone());
                }
                backends = vec![Backend {
                    weight: 1,
                    target: BackendTarget::Invalid(why.into()),
                    request_headers: None,
                    settings: Arc::default(),
                }];
            }
            let key = (metrics_route, String::new(), rule_name);
            self.live.insert(key.clone());
            out.push((
                matches,
                Arc::new(Rule {
                    route: route.clone(),
                    request_headers: parts.request_headers,
                    response_headers: parts.response_headers,
                    redirect: parts.redirect.filter(|_| parts.extension.is_none()),
                    rewrite: parts.rewrite,
                    cors: parts.cors,
                    mirrors,
                    backends,
                    timeout: rule
                        .timeouts
                        .as_ref()
                        .and_then(|t| t.request.as_deref())
                        .and_then(weft_gateway::duration::parse)
                        .filter(|d| !d.is_zero()),
                    retry: rule.retry.as_ref().and_then(Retry::compile),
                    metrics: self.metrics.route(key),
                }),
            ));
        }
        CompiledRules {
            rules: out,
            resolved,
            dropped,
        }
    }

    /// Where a backendRef leads, and the ResolvedRefs problem it has; the BackendTLSPolicy of its Service port
    /// (not for TLSRoutes, whose connections pass through) goes in `used`.
    fn backend(
        &mut self,
        kind: &str,
        namespace: &str,
        b: &BackendRef,
        grants: &Grants,
        (policies, used): (&backendtls::Policies, &mut Vec<PolicyUse>),
    ) -> (BackendTarget, Option<(&'static str, String)>) {
        let invalid = |reason: &'static str, message: String| {
            (BackendTarget::Invalid(message.as_str().into()), Some((reason, message)))
        };
        if !b.is_service() {
            return invalid("InvalidKind", format!("backend {} is not a Service", b.name));
        }
        let ns = b.namespace.as_deref().unwrap_or(namespace);
        if !grants.allow((GROUP, kind, namespace), ("", "Service", ns, &b.name)) {
            return invalid(
                "RefNotPermitted",
                format!("no ReferenceGrant lets the route use Service {ns}/{}", b.name),
            );
        }
        let Some(port) = b.port else {
            return invalid("BackendNotFound", format!("backend {ns}/{} has no port", b.name));
        };
        let port_spec = ServiceBackendPort {
            number: Some(port),
            name: None,
        };
        match self.index.upstream(ns, &b.name, &port_spec) {
            Ok(upstream) => {
                // gRPC is HTTP/2: h2c to the backend, whatever its appProtocol.
                let protocol = match kind {
                    "GRPCRoute" => BackendProtocol::Grpc,
                    _ => app_protocol(self.snapshot, ns, &b.name, port),
                };
                let policy = (kind != "TLSRoute")
                    .then(|| policies.of(self.snapshot, ns, &b.name, port))
                    .flatten();
                let Some(policy) = policy else {
                    let upstream = Arc::new(upstream);
                    return (
                        BackendTarget::Service {
                            upstream,
                            protocol,
                            tls: None,
                        },
                        None,
                    );
                };
                let verified = backendtls::material(policy, self.snapshot).and_then(|material| {
                    backendtls::client(policy, &material, protocol, self.clients, self.clients_used)
                });
                let policy_id = (ns.to_string(), policy.metadata.name.clone().unwrap_or_default());
                used.push((policy_id, policy.metadata.generation, verified.as_ref().err().cloned()));
                match verified {
                    Ok((client, protocol)) => (
                        BackendTarget::Service {
                            upstream: Arc::new(upstream),
                            protocol,
                            tls: Some(Box::new(client)),
                        },
                        None,
                    ),
                    // The policy's own status says why; the route's share answers 500.
                    Err((_, why)) => (
                        BackendTarget::Invalid(format!("BackendTLSPolicy of {ns}/{}: {why}", b.name).into()),
                        None,
                    ),
                }
            }
            Err(e) => invalid("BackendNotFound", e.to_string()),
        }
    }
}

/// A ListenerSet whose parentRef is one of our Gateways, with its listeners as a Gateway's.
struct SetIn {
    id: (String, String),
    generation: Option<i64>,
    /// The Gateway (namespace, name).
    parent: (String, String),
    /// Whether the Gateway's `allowedListeners` let it in.
    allowed: bool,
    listeners: Vec<Listener>,
}

impl SetIn {
    /// Its conditions (its Gateway accepted or not) and its listeners' states.
    fn state(&self, gateway_accepted: bool, listeners: Vec<ListenerState>) -> ListenerSetState {
        let valid = listeners
            .iter()
            .filter(|l| l.conditions.iter().any(|c| c.type_ == "Accepted" && c.status))
            .count();
        let (accepted, reason, message) = if !self.allowed {
            (false, "NotAllowed", "the Gateway's allowedListeners do not let it in")
        } else if !gateway_accepted {
            (false, "ParentNotAccepted", "the Gateway is not accepted")
        } else if valid == listeners.len() {
            (true, "Accepted", "")
        } else if valid > 0 {
            (true, "ListenersNotValid", "some listeners are not valid")
        } else {
            (false, "ListenersNotValid", "no listener is valid")
        };
        let programmed = match accepted {
            true => cond("Programmed", true, "Programmed", ""),
            false => cond("Programmed", false, reason, message),
        };
        ListenerSetState {
            namespace: self.id.0.clone(),
            name: self.id.1.clone(),
            generation: self.generation,
            conditions: vec![cond("Accepted", accepted, reason, message), programmed],
            listeners,
        }
    }
}

/// The ListenerSets of `gateways` (ours), oldest first, and whether each Gateway lets them in (its
/// `allowedListeners`: namespaces `Same`, `All` or `Selector`; none by default).
fn listener_sets(
    snapshot: &Snapshot,
    gateways: &[Gateway],
    namespaces: &HashMap<String, BTreeMap<String, String>>,
) -> Vec<SetIn> {
    let mut sets: Vec<ListenerSet> = decode(snapshot, "ListenerSet");
    sets.sort_by_key(|s| age(&s.metadata));
    sets.into_iter()
        .filter_map(|s| {
            let (namespace, name) = id(&s.metadata);
            let p = &s.spec.parent_ref;
            if p.group() != GROUP || p.kind() != "Gateway" {
                return None;
            }
            let parent = (p.namespace.clone().unwrap_or_else(|| namespace.clone()), p.name.clone());
            let gateway = gateways.iter().find(|g| id(&g.metadata) == parent)?;
            let from = gateway
                .spec
                .allowed_listeners
                .as_ref()
                .and_then(|a| a.namespaces.as_ref());
            let allowed = match from.and_then(|f| f.from.as_deref()).unwrap_or("None") {
                "All" => true,
                "Same" => namespace == parent.0,
                "Selector" => from
                    .and_then(|f| f.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, namespaces.get(&namespace))),
                _ => false,
            };
            let listeners = s
                .spec
                .listeners
                .iter()
                .map(|l| Listener {
                    name: l.name.clone(),
                    hostname: l.hostname.clone(),
                    port: l.port,
                    protocol: l.protocol.clone(),
                    tls: l.tls.clone(),
                    allowed_routes: l.allowed_routes.clone(),
                })
                .collect();
            Some(SetIn {
                id: (namespace, name),
                generation: s.metadata.generation,
                parent,
                allowed,
                listeners,
            })
        })
        .collect()
}

/// A listener's protocol family: listeners sharing a port must be all HTTP or all over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Http,
    /// HTTPS, and TLS in mode Terminate (the default).
    Terminate,
    /// TLS in mode Passthrough.
    Passthrough,
}

fn family(l: &Listener) -> Family {
    let mode = l.tls.as_ref().and_then(|t| t.mode.as_deref());
    match (l.protocol.as_str(), mode) {
        ("HTTP", _) => Family::Http,
        ("TLS", Some("Passthrough")) => Family::Passthrough,
        _ => Family::Terminate,
    }
}

fn handling(l: &Listener) -> Handling {
    match (l.protocol.as_str(), family(l)) {
        ("TLS", Family::Terminate) => Handling::Terminate,
        (_, Family::Passthrough) => Handling::Passthrough,
        _ => Handling::Requests,
    }
}

/// A route's rules as compiled.
struct CompiledRules {
    /// The rules served, with their matches.
    rules: Vec<(Vec<Match>, Arc<Rule>)>,
    /// The route's ResolvedRefs condition.
    resolved: Cond,
    /// The rules left out (they cannot be served): the reason of a route none of whose rules can be, and
    /// which rule and why.
    dropped: Vec<(&'static str, String)>,
}

/// The rules a route leaves out and why, for its conditions' messages.
fn dropped(compiled: &CompiledRules) -> String {
    let list: Vec<&str> = compiled.dropped.iter().map(|(_, why)| why.as_str()).collect();
    list.join("; ")
}

/// Routes are taken oldest first, then by namespace/name.
fn age(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, (String, String)) {
    let ts = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    (ts, id(meta))
}

/// The protocol a Service port's `appProtocol` asks for: h2c (`kubernetes.io/h2c`), else HTTP/1.1 (WebSocket
/// upgrades pass through HTTP/1.1 as they are).
fn app_protocol(snapshot: &Snapshot, namespace: &str, name: &str, port: i32) -> BackendProtocol {
    let app = service_port(snapshot, namespace, name, port).and_then(|p| p.app_protocol);
    match app.as_deref() {
        Some("kubernetes.io/h2c") => BackendProtocol::Grpc,
        _ => BackendProtocol::Http,
    }
}

/// Port `port` of Service `namespace/name`, as the snapshot has it.
pub(super) fn service_port(snapshot: &Snapshot, namespace: &str, name: &str, port: i32) -> Option<ServicePort> {
    let key = weft_model::Key::new("Service", Some(namespace), name);
    let service = serde_json::from_value::<Service>(snapshot.get(&key)?.to_value()).ok()?;
    service.spec?.ports?.into_iter().find(|p| p.port == port)
}

/// A rule's (or backendRef's) filters compiled.
#[derive(Default)]
struct Filters {
    request_headers: Option<HeaderEdit>,
    response_headers: Option<HeaderEdit>,
    redirect: Option<Redirect>,
    rewrite: Option<Rewrite>,
    cors: Option<Cors>,
    /// An ExtensionRef filter (weft serves none): its rule answers 500.
    extension: Option<String>,
}

impl Filters {
    fn compile(list: &[HTTPRouteFilter], prefix: Option<&str>) -> Result<Filters, filters::FilterError> {
        use filters::FilterError;
        let mut out = Filters::default();
        let count = |type_: &str| list.iter().filter(|f| f.type_ == type_).count();
        if count("RequestRedirect") > 0 && count("URLRewrite") > 0 {
            return Err(FilterError::Incompatible("RequestRedirect and URLRewrite in one rule"));
        }
        let once = [
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
        ];
        if once.iter().any(|t| count(t) > 1) {
            return Err(FilterError::Incompatible(
                "a filter type given twice that may be given once",
            ));
        }
        for f in list {
            match f.type_.as_str() {
                "RequestHeaderModifier" => {
                    out.request_headers = f
                        .request_header_modifier
                        .as_ref()
                        .map(HeaderEdit::compile)
                        .transpose()?;
                }
                "ResponseHeaderModifier" => {
                    out.response_headers = f
                        .response_header_modifier
                        .as_ref()
                        .map(HeaderEdit::compile)
                        .transpose()?;
                }
                "RequestRedirect" => {
                    out.redirect = f
                        .request_redirect
                        .as_ref()
                        .map(|r| Redirect::compile(r, prefix))
                        .transpose()?;
                }
                "URLRewrite" => {
                    out.rewrite = f
                        .url_rewrite
                        .as_ref()
                        .map(|r| Rewrite::compile(r, prefix))
                        .transpose()?;
                }
                "CORS" => out.cors = f.cors.as_ref().map(Cors::compile),
                // Compiled with the rule's backends (`Compiler::rules`).
                "RequestMirror" => {}
                "ExtensionRef" => {
                    out.extension = f
                        .extension_ref
                        .as_ref()
                        .map(|r| format!("{}/{} {}", r.group, r.kind, r.name))
                        .or_else(|| Some("ExtensionRef".into()));
                }
                other => return Err(FilterError::Unsupported(other.to_string())),
            }
        }
        Ok(out)
    }
}

/// Whether a namespace's labels meet a listener's namespace selector (weft-model's label selectors).
fn selector_matches(selector: &weft_gateway::api::LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Ok(selector) = serde_json::to_value(selector).and_then(serde_json::from_value) else {
        return false;
    };
    weft_model::selector::matches(&selector, labels.unwrap_or(&BTreeMap::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listeners of upstream's HTTPRouteHTTPSListenerDetectMisdirectedRequests: 443 without a hostname,
    /// second-example.org, *.wildcard.org and fourth-example.wildcard.org, most specific first.
    fn port() -> Port {
        let listener = |hostname: Option<&str>| ListenerRoutes {
            hostname: hostname.map(str::to_string),
            ..ListenerRoutes::default()
        };
        Port {
            gateway: "infra/https".into(),
            port: 443,
            serving: Serving::Https,
            listeners: vec![
                listener(Some("second-example.org")),
                listener(Some("fourth-example.wildcard.org")),
                listener(Some("*.wildcard.org")),
                listener(None),
            ],
        }
    }

    #[test]
    fn a_host_of_another_listener_than_the_server_names_is_misdirected() {
        let port = port();
        // (server name, host, misdirected): the upstream test's cases (its 404s and 200s are not).
        let cases = [
            ("example.org", "example.org", false),
            ("example.org", "second-example.org", true),
            ("example.org", "unknown-example.org", false),
            ("second-example.org", "second-example.org", false),
            ("second-example.org", "example.org", true),
            ("second-example.org", "unknown-example.org", true),
            ("third-example.wildcard.org", "third-example.wildcard.org", false),
            ("third-example.wildcard.org", "fith-example.wildcard.org", false),
            ("third-example.wildcard.org", "fourth-example.wildcard.org", true),
            ("third-example.wildcard.org", "second-example.org", true),
            ("third-example.wildcard.org", "unknown-example.org", true),
            ("fourth-example.wildcard.org", "fourth-example.wildcard.org", false),
            ("fourth-example.wildcard.org", "fith-example.wildcard.org", true),
            ("unknown-example.org", "example.org", false),
            ("unknown-example.org", "unknown-example.org", false),
            ("Second-Example.org.", "second-example.org", false),
        ];
        for (sni, host, misdirected) in cases {
            assert_eq!(port.misdirected(sni, host), misdirected, "{sni} {host}");
        }
        // Without a listener for every name, a host none covers is not misdirected (404).
        let mut specific = port;
        specific.listeners.pop();
        assert!(!specific.misdirected("second-example.org", "example.org"));
        // TLS listeners do not take requests.
        specific.listeners[0].handling = Handling::Passthrough;
        assert!(!specific.misdirected("a.wildcard.org", "second-example.org"));
    }
}
