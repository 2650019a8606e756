//! The Gateway API part of `weft ingress`: the kinds it follows, the GatewayClass it makes, the listeners on the
//! Gateways' pod ports (opened and closed as the routing table's change), and the writes: each Gateway's
//! LoadBalancer Service and the statuses of GatewayClasses, Gateways, ListenerSets, HTTPRoutes, GRPCRoutes,
//! TLSRoutes and BackendTLSPolicies (only what differs from what the cluster shows).

use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;
use weft_gateway::api::{
    BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, GatewayClassSpec, HTTPRoute, ListenerSet, ReferenceGrant,
    TLSRoute,
};
use weft_ingress::gateway::{Serving, passthrough, provision, sni, status, tls};
use weft_ingress::proxy::Proxy;
use weft_ingress::{Table, server};
use weft_model::k8s_openapi::api::core::v1::Service;
use weft_model::{Key, Snapshot};

/// The field manager of the provisioned Services.
const MANAGER: &str = "weft-gateway";

/// The Gateway API's kinds the table is made of.
pub fn resources() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<GatewayClass>(&()),
        ApiResource::erase::<Gateway>(&()),
        ApiResource::erase::<HTTPRoute>(&()),
        ApiResource::erase::<GRPCRoute>(&()),
        ApiResource::erase::<TLSRoute>(&()),
        ApiResource::erase::<ListenerSet>(&()),
        ApiResource::erase::<BackendTLSPolicy>(&()),
        ApiResource::erase::<ReferenceGrant>(&()),
    ]
}

/// Whether the cluster serves the Gateway API (its CRDs are installed): a 404 says not; other failures (the API
/// not reachable yet) are retried for up to 30 s before the answer is no.
pub async fn installed(client: &kube::Client) -> bool {
    let api = Api::<GatewayClass>::all(client.clone());
    for _ in 0..30 {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return true,
            Err(kube::Error::Api(status)) if status.code == 404 => return false,
            Err(e) => {
                tracing::debug!(error = %e, "asking whether the Gateway API is installed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    false
}

/// The GatewayClass `name` of `controller`, made when the cluster has none of that name (an existing class,
/// whatever its controller, is left as it is). deploy/gateway.yaml cannot hold it: kubectl maps every object of
/// a file before it applies any, and the class's kind exists only once the file's CRD does.
pub async fn ensure_class(client: kube::Client, name: String, controller: String) {
    let api = Api::<GatewayClass>::all(client);
    let class = GatewayClass::new(
        &name,
        GatewayClassSpec {
            controller_name: controller,
            parameters_ref: None,
            description: Some("weft ingress (see docs/gateway-api.md)".into()),
        },
    );
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => tracing::info!(class = %name, "GatewayClass made"),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => tracing::warn!(class = %name, error = %e, "making the GatewayClass"),
    }
}

/// The listeners of the Gateways' pod ports.
pub struct Listeners {
    pub ip: IpAddr,
    pub proxy: Arc<Proxy>,
    pub table: Arc<arc_swap::ArcSwap<Table>>,
    pub runtime: tokio::runtime::Handle,
    /// Turns true on termination: every listener closes.
    pub stopped: watch::Receiver<bool>,
    /// Open ports: how each serves, and what closes the listener.
    pub open: HashMap<u16, (Serving, watch::Sender<bool>)>,
}

impl Listeners {
    /// Opens the ports of `wanted` (pod port → how it serves) not yet open, closes those no longer wanted.
    pub fn sync(&mut self, wanted: &BTreeMap<u16, Serving>) {
        self.open.retain(|port, (serving, stop)| {
            let keep = wanted.get(port) == Some(serving);
            if !keep {
                stop.send_replace(true);
                tracing::info!(port, "gateway listener closed");
            }
            keep
        });
        for (&port, &serving) in wanted {
            if self.open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.ip, port);
            let listener = std::net::TcpListener::bind(addr).and_then(|l| {
                l.set_nonblocking(true)?;
                let _guard = self.runtime.enter();
                tokio::net::TcpListener::from_std(l)
            });
            let listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "opening a gateway listener");
                    continue;
                }
            };
            let tls_config = matches!(serving, Serving::Https | Serving::BySni)
                .then(|| {
                    let resolver = tls::Resolver {
                        table: self.table.clone(),
                        port,
                    };
                    weft_ingress::tls::server_config(Arc::new(resolver)).ok()
                })
                .flatten();
            let (stop, stopping) = watch::channel(false);
            let mut global = self.stopped.clone();
            let closer = stop.clone();
            self.runtime.spawn(async move {
                let _ = global.wait_for(|s| *s).await;
                closer.send_replace(true);
            });
            match serving {
                Serving::Passthrough => {
                    let proxy_protocol = self.proxy.proxy_protocol();
                    let table = self.table.clone();
                    self.runtime
                        .spawn(passthrough::serve(listener, table, port, proxy_protocol, stopping))
                }
                Serving::BySni => match tls_config {
                    Some(config) => self.runtime.spawn(sni::serve(
                        listener,
                        self.proxy.clone(),
                        self.table.clone(),
                        port,
                        sni::Acceptors::new(config),
                        stopping,
                    )),
                    None => continue,
                },
                Serving::Http | Serving::Https => {
                    let acceptor = tls_config.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
                    self.runtime
                        .spawn(server::serve(listener, self.proxy.clone(), acceptor, stopping))
                }
            };
            tracing::info!(port, ?serving, "gateway listener open");
            self.open.insert(port, (serving, stop));
        }
    }
}

/// What to write to the cluster.
#[derive(Clone, Default)]
pub struct Writes {
    statuses: Vec<status::Wanted>,
    services: Vec<Service>,
    /// Provisioned Services whose Gateway the snapshot does not show: (namespace, name) of the Service, then of
    /// its Gateway.
    stale: Vec<((String, String), (String, String))>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.services.is_empty() && self.stale.is_empty()
    }
}

/// What differs between what `table` wants and what `snapshot` shows.
pub fn writes(table: &Table, snapshot: &Snapshot, controller: &str, home: Option<&str>) -> Writes {
    let gateways = table.gateways();
    let now = weft_model::k8s_openapi::jiff::Timestamp::now().to_string();
    let statuses = status::wanted(gateways, snapshot, controller, &now)
        .into_iter()
        .filter(|w| {
            let current = snapshot.get(&w.key).map(|o| o.to_value()["status"].clone());
            current.as_ref().is_none_or(|c| !same_status(c, &w.status))
        })
        .collect();
    let provisioned: Vec<Service> = snapshot
        .of_kind("Service")
        .filter_map(|o| serde_json::from_value::<Service>(o.to_value()).ok())
        .filter(|s| home.is_some() && s.metadata.namespace.as_deref() == home && provision::owner(s).is_some())
        .collect();
    let services = gateways
        .services
        .iter()
        .filter(|w| {
            let current = provisioned.iter().find(|s| s.metadata.name == w.metadata.name);
            current.is_none_or(|c| {
                let (a, b) = (c.spec.clone().unwrap_or_default(), w.spec.clone().unwrap_or_default());
                let a = (a.type_, a.selector, ports(&a.ports), a.load_balancer_ip);
                a != (b.type_, b.selector, ports(&b.ports), b.load_balancer_ip)
            })
        })
        .cloned()
        .collect();
    let stale = provisioned
        .iter()
        .filter(|s| gateways.services.iter().all(|w| w.metadata.name != s.metadata.name))
        .filter_map(|s| {
            let (namespace, gateway) = provision::owner(s)?;
            let service = (s.metadata.namespace.clone()?, s.metadata.name.clone()?);
            Some((service, (namespace.to_string(), gateway.to_string())))
        })
        .collect();
    Writes {
        statuses,
        services,
        stale,
    }
}

/// A Service's ports as the provisioner writes them (port, target port).
fn ports(ports: &Option<Vec<weft_model::k8s_openapi::api::core::v1::ServicePort>>) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = ports
        .iter()
        .flatten()
        .map(|p| (p.port, format!("{:?}", p.target_port)))
        .collect();
    out.sort();
    out
}

/// Whether a status already says what is wanted (transition times aside, which the wanted ones keep).
fn same_status(current: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    wanted
        .as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| current.get(k) == Some(v)))
}

/// Carries out the latest writes (a failure is logged; the next snapshot that still differs asks again).
pub async fn write(client: kube::Client, controller: String, mut pending: watch::Receiver<Writes>) {
    while pending.changed().await.is_ok() {
        let writes = pending.borrow_and_update().clone();
        for service in &writes.services {
            let (Some(namespace), Some(name)) = (&service.metadata.namespace, &service.metadata.name) else {
                continue;
            };
            let api: Api<Service> = Api::namespaced(client.clone(), namespace);
            let mut body = serde_json::to_value(service).unwrap_or_default();
            body["apiVersion"] = "v1".into();
            body["kind"] = "Service".into();
            match api
                .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
                .await
            {
                Ok(_) => tracing::info!(service = %format!("{namespace}/{name}"), "gateway Service applied"),
                Err(e) => {
                    tracing::warn!(service = %format!("{namespace}/{name}"), error = %e, "applying a gateway Service")
                }
            }
        }
        for ((namespace, name), (gateway_namespace, gateway)) in &writes.stale {
            // A snapshot's Services and Gateways come from two watches with no order between them: a Service a
            // replica made for a new Gateway may arrive before that Gateway. Only the API says it is gone.
            match served(&client, &controller, gateway_namespace, gateway).await {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    tracing::warn!(gateway = %format!("{gateway_namespace}/{gateway}"), error = %e, "asking whether a Gateway is still served");
                    continue;
                }
            }
            let api: Api<Service> = Api::namespaced(client.clone(), namespace);
            if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                tracing::warn!(service = %format!("{namespace}/{name}"), error = %e, "deleting a gateway Service");
            }
        }
        for wanted in &writes.statuses {
            let Some(resource) = resource(&wanted.key) else {
                continue;
            };
            let api: Api<DynamicObject> = match &wanted.key.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            let patch = serde_json::json!({"status": wanted.status});
            if let Err(e) = api
                .patch_status(&wanted.key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(object = %format!("{:?}", wanted.key), error = %e, "writing a status");
            }
        }
    }
}

/// Whether the Gateway exists with a class of `controller`'s, as the API has it now.
async fn served(client: &kube::Client, controller: &str, namespace: &str, name: &str) -> Result<bool, kube::Error> {
    let Some(gateway) = Api::<Gateway>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
    else {
        return Ok(false);
    };
    let class = Api::<GatewayClass>::all(client.clone())
        .get_opt(&gateway.spec.gateway_class_name)
        .await?;
    Ok(class.is_some_and(|c| c.spec.controller_name == controller))
}

fn resource(key: &Key) -> Option<ApiResource> {
    resources().into_iter().find(|r| r.kind == key.kind)
}
