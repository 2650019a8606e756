//! `weft ingress`: the Ingress controller (the role ingress-nginx plays), fed by the Kubernetes API or, for tests,
//! by a fixed manifest file.

use crate::api_args::ApiArgs;
use crate::logging::Logging;
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use weft_daemon::http::Probes;
use weft_daemon::metrics::Registry;
use weft_daemon::signal::Termination;
use weft_dns::StaticSource;
use weft_ingress::metrics::Metrics;
use weft_ingress::proxy::Proxy;
use weft_ingress::{Config, Problem, Table, follow, server, tls};
use weft_kube::KubeSource;
use weft_model::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use weft_model::k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use weft_model::k8s_openapi::jiff::Timestamp;
use weft_model::{Snapshot, Source};

#[derive(clap::Args)]
pub struct Args {
    /// Plain HTTP (HTTP/1.1 and h2c) address.
    #[arg(long, default_value = "0.0.0.0:80")]
    http: SocketAddr,
    /// HTTPS address (TLS 1.2/1.3, ALPN h2 and http/1.1).
    #[arg(long, default_value = "0.0.0.0:443")]
    https: SocketAddr,
    /// Address of /healthz, /readyz and /metrics (ingress-nginx's health port).
    #[arg(long, default_value = "0.0.0.0:10254")]
    status: SocketAddr,
    /// The `spec.controller` of the IngressClasses served.
    #[arg(long, default_value = "weft.dev/ingress")]
    controller: String,
    /// The `controllerName` of the GatewayClasses served (Gateway API, when its CRDs are installed; see
    /// docs/gateway-api.md). Each Gateway gets a LoadBalancer Service beside --publish-service's.
    #[arg(long, default_value = "weft.dev/gateway")]
    gateway_controller: String,
    /// The GatewayClass of --gateway-controller made at start when the cluster has no class of this name (an
    /// existing one is left as it is); empty: none is made.
    #[arg(long, default_value = "weft")]
    gateway_class: String,
    /// A kubernetes.io/tls Secret, NAMESPACE/NAME, served for names no Ingress's Secret covers (instead of the
    /// self-signed certificate generated at start).
    #[arg(long, value_parser = namespaced)]
    default_ssl_certificate: Option<(String, String)>,
    /// The controller's own Service, NAMESPACE/NAME, whose addresses (its LoadBalancer's, else the nodes') the
    /// served Ingresses' status.loadBalancer.ingress gets. Without it, no status is written.
    #[arg(long, value_parser = namespaced)]
    publish_service: Option<(String, String)>,
    /// Serve the objects of this manifest file instead of following the Kubernetes API.
    #[arg(long, conflicts_with = "kubeconfig")]
    objects: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
    /// Log every request (target `access`: client, method, URI, version, status, Ingress, microseconds to the
    /// response's head).
    #[arg(long)]
    access_log: bool,
    /// Every connection (both listeners) starts with a PROXY protocol header, v1 or v2, from a load balancer in
    /// front; the client it names is the request's client (ingress-nginx's `use-proxy-protocol`).
    #[arg(long)]
    proxy_protocol: bool,
    /// Proxy worker threads, each a single-threaded runtime with listeners of its own (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Seconds to keep serving after SIGTERM, with /readyz failing, while the Service's endpoints drop this pod.
    #[arg(long, default_value_t = 5)]
    lameduck: u64,
    /// Seconds to wait after the lameduck period, listeners closed, for requests in flight to finish.
    #[arg(long, default_value_t = 20)]
    drain: u64,
    #[command(flatten)]
    logging: Logging,
}

/// The status the Ingresses `stale` (namespace, name) should have.
#[derive(Clone)]
struct StatusWish {
    wanted: Vec<IngressLoadBalancerIngress>,
    stale: Vec<(String, String)>,
}

/// Writes status.loadBalancer.ingress of each Ingress wished for (a failure is logged; the next snapshot that
/// still shows the Ingress stale asks again).
async fn write_status(client: kube::Client, mut pending: watch::Receiver<Option<StatusWish>>) {
    while pending.changed().await.is_ok() {
        let Some(wish) = pending.borrow_and_update().clone() else {
            continue;
        };
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": wish.wanted}}});
        for (namespace, name) in wish.stale {
            let api: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => tracing::info!(ingress = %format!("{namespace}/{name}"), "status.loadBalancer updated"),
                Err(e) => tracing::warn!(ingress = %format!("{namespace}/{name}"), error = %e, "updating the status"),
            }
        }
    }
}

/// The Warning event of a problem with an Ingress (none for a problem of no Ingress, or of one since deleted).
fn warning(snapshot: &Snapshot, problem: &Problem) -> Option<Event> {
    let (namespace, name) = problem.ingress.as_ref()?;
    let ingress = snapshot.get(&weft_model::Key::new("Ingress", Some(namespace), name))?;
    let now = Time(Timestamp::now());
    Some(Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
            uid: ingress.meta().uid.clone(),
            resource_version: ingress.meta().resource_version.clone(),
            ..Default::default()
        },
        type_: Some("Warning".into()),
        reason: Some(problem.reason.into()),
        message: Some(problem.message.clone()),
        source: Some(EventSource {
            component: Some("weft-ingress".into()),
            ..Default::default()
        }),
        reporting_component: Some("weft.dev/ingress".into()),
        reporting_instance: std::env::var("HOSTNAME").ok(),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    })
}

/// Creates the Warning events (a failure is logged: the problem is in the log already).
async fn write_events(client: kube::Client, mut to_send: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = to_send.recv().await {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(%namespace, error = %e, "creating a Warning event");
        }
    }
}

fn namespaced(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok((ns.into(), name.into())),
        _ => Err(format!("{text}: not NAMESPACE/NAME")),
    }
}

/// Ready once the first routing table is in place; not ready while terminating.
struct Status {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Probes for Status {
    fn healthy(&self) -> Result<(), String> {
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            Err("terminating".into())
        } else if !self.ready.load(Ordering::Relaxed) {
            Err("no routing table yet".into())
        } else {
            Ok(())
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    // First, before any thread exists: every thread must block the termination signals.
    let termination = Termination::block().context("blocking SIGTERM")?;
    args.logging.init()?;
    let status = Arc::new(Status {
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
    });
    let registry = Registry::default();
    // The Gateway API is served when the cluster has its kinds (with --objects: always).
    let gateway_api = match &args.objects {
        Some(_) => true,
        None => {
            let probe = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            probe.block_on(async {
                let (client, _) = weft_kube::client(&args.api.options()).await?;
                anyhow::Ok(crate::gateway::installed(&client).await)
            })?
        }
    };
    if !gateway_api {
        tracing::info!("the Gateway API's CRDs are not installed: serving Ingresses only");
    }
    let mut source: Box<dyn Source> = match &args.objects {
        Some(path) => Box::new(StaticSource::from_file(path).context("weft ingress --objects")?),
        None => {
            let mut kinds = follow::KINDS.to_vec();
            let mut custom = Vec::new();
            if gateway_api {
                kinds.extend(follow::GATEWAY_KINDS);
                custom = crate::gateway::resources();
            }
            let kube = KubeSource::start(&args.api.options(), &kinds, &custom).context("weft ingress")?;
            registry.register(kube.stats());
            Box::new(kube)
        }
    };
    let table = Arc::new(ArcSwap::from_pointee(Table::default()));
    let default_certificate = Arc::new(tls::self_signed()?);
    let resolver = tls::Resolver {
        table: table.clone(),
        default: default_certificate,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(Arc::new(resolver))?));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        runtime.worker_threads(args.workers);
    }
    let runtime = runtime.enable_all().thread_name("ingress").build()?;
    let metrics = Arc::new(Metrics::default());
    registry.register(metrics.clone());
    let proxy = Arc::new(
        Proxy::new(table.clone(), metrics.clone())
            .with_access_log(args.access_log)
            .with_proxy_protocol(args.proxy_protocol),
    );
    let workers = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // SO_REUSEPORT would let the two share one port rather than fail to bind.
    if args.http.port() != 0 && args.http == args.https {
        anyhow::bail!("--http and --https are both {}", args.http);
    }
    let bind = |addr| server::bind_shared(addr, workers).with_context(|| format!("binding {addr}"));
    let (http, https) = (bind(args.http)?, bind(args.https)?);
    let (stop, stopped) = watch::channel(false);
    let (gateway_proxy, gateway_stopped) = (proxy.clone(), stopped.clone());
    // The listeners are served by worker threads, each a single-threaded runtime with a listener of each port
    // of its own (as nginx's worker processes): a connection, its requests and their upstream connections stay
    // on one thread, without the work-stealing runtime's hand-offs between threads. The API, status and
    // Gateway listeners stay on `runtime`.
    let mut servers = Vec::new();
    for (i, (http, https)) in http.into_iter().zip(https).enumerate() {
        let worker = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (http, https) = {
            let _in = worker.enter();
            (server::listen(http)?, server::listen(https)?)
        };
        worker.spawn(server::keep_timer_near());
        servers.push(worker.spawn(server::serve(http, proxy.clone(), None, stopped.clone())));
        servers.push(worker.spawn(server::serve(
            https,
            proxy.clone(),
            Some(acceptor.clone()),
            stopped.clone(),
        )));
        std::thread::Builder::new()
            .name(format!("ingress-{i}"))
            .spawn(move || worker.block_on(std::future::pending::<()>()))?;
    }
    let status_addr = weft_daemon::http::start(args.status, status.clone(), registry)
        .with_context(|| format!("binding {}", args.status))?;
    tracing::info!(http = %args.http, https = %args.https, status = %status_addr, controller = %args.controller, "serving");
    let (lameduck, drain) = (Duration::from_secs(args.lameduck), Duration::from_secs(args.drain));
    let (draining, lameduck_proxy) = (status.clone(), proxy);
    let handle = runtime.handle().clone();
    termination.on_signal(move |signal| {
        tracing::info!(%signal, lameduck = ?lameduck, "terminating: not ready, still serving for the lameduck period");
        draining.draining.store(true, Ordering::Relaxed);
        lameduck_proxy.drain();
        std::thread::sleep(lameduck);
        tracing::info!(drain = ?drain, "closing the listeners; waiting for requests in flight");
        stop.send_replace(true);
        // The timer is made inside the runtime (a timeout needs its time driver).
        let all = futures::future::join_all(servers);
        match handle.block_on(async move { tokio::time::timeout(drain, all).await }) {
            Ok(_) => tracing::info!("every connection finished"),
            Err(_) => tracing::warn!("connections still open after the drain timeout; closing them"),
        }
        std::process::exit(0);
    })?;
    let gateway_controller = if gateway_api {
        args.gateway_controller.clone()
    } else {
        String::new()
    };
    let config = Config {
        controller: args.controller,
        default_certificate: args.default_ssl_certificate,
        metrics,
        gateway: weft_ingress::gateway::Settings {
            controller: gateway_controller.clone(),
            publish: args.publish_service.clone(),
        },
        ..Config::default()
    };
    let mut listeners = crate::gateway::Listeners {
        ip: args.http.ip(),
        proxy: gateway_proxy,
        table: table.clone(),
        runtime: runtime.handle().clone(),
        stopped: gateway_stopped,
        open: Default::default(),
    };
    let (gateway_writes, gateway_pending) = watch::channel(crate::gateway::Writes::default());
    let home = args.publish_service.as_ref().map(|(namespace, _)| namespace.clone());
    // The status writes wait for the latest wish only: a newer snapshot replaces an unsent one.
    let (wishes, pending) = watch::channel(None);
    let (events, to_send) = mpsc::unbounded_channel();
    // Writing (status, events) needs the API; a manifest file (--objects) is only read.
    let mut publish = None;
    if args.objects.is_none() {
        let (client, _) = runtime.block_on(weft_kube::client(&args.api.options()))?;
        runtime.spawn(write_events(client.clone(), to_send));
        if gateway_api && !args.gateway_class.is_empty() {
            runtime.spawn(crate::gateway::ensure_class(
                client.clone(),
                args.gateway_class.clone(),
                gateway_controller.clone(),
            ));
        }
        if gateway_api {
            runtime.spawn(crate::gateway::write(
                client.clone(),
                gateway_controller.clone(),
                gateway_pending,
            ));
        }
        if let Some(service) = args.publish_service {
            runtime.spawn(write_status(client, pending));
            publish = Some(service);
        }
    }
    let status_config = config.clone();
    follow::follow(source.as_mut(), &config, &table, &status.ready, |snapshot, appeared| {
        if gateway_api {
            let current = table.load();
            listeners.sync(&current.gateways().pod_ports());
            let writes = crate::gateway::writes(&current, snapshot, &gateway_controller, home.as_deref());
            if !writes.is_empty() {
                gateway_writes.send_replace(writes);
            }
        }
        if let Some((namespace, name)) = &publish {
            let wanted = weft_ingress::status::addresses(snapshot, namespace, name);
            let stale = weft_ingress::status::stale(snapshot, &status_config, &wanted);
            if !stale.is_empty() {
                wishes.send_replace(Some(StatusWish { wanted, stale }));
            }
        }
        for problem in appeared {
            if let Some(event) = warning(snapshot, problem) {
                let _ = events.send(event);
            }
        }
    })
}
