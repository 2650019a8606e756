//! `weft certs`: the certificate controller (the role cert-manager plays): cert-manager's Issuers, ClusterIssuers,
//! Certificates and CertificateRequests, and Certificates for annotated Ingresses (ingress-shim).

use crate::api_args::ApiArgs;
use crate::logging::Logging;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use weft_certs::api::IssuerRef;
use weft_certs::controller::{self, Options};
use weft_daemon::http::Probes;
use weft_daemon::metrics::Registry;
use weft_daemon::signal::Termination;

#[derive(clap::Args)]
pub struct Args {
    /// Address of /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9403")]
    status: SocketAddr,
    /// Where the Secrets that ClusterIssuers name live (cert-manager's flag of that name).
    #[arg(long, default_value = "weft-certs")]
    cluster_resource_namespace: String,
    /// The issuer of Ingresses annotated `kubernetes.io/tls-acme: "true"` without an issuer annotation.
    #[arg(long)]
    default_issuer_name: Option<String>,
    #[arg(long, default_value = "Issuer")]
    default_issuer_kind: String,
    #[arg(long, default_value = "cert-manager.io")]
    default_issuer_group: String,
    /// The image of ACME HTTP-01 solver pods: weft's own, whose `weft acme-solver` serves the key authorization.
    #[arg(long, default_value = "ghcr.io/weft-project/weft:v0.1.0")]
    acme_solver_image: String,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    logging: Logging,
}

/// Alive while the process is; ready once it runs (the controllers retry the API themselves).
struct Status;

impl Probes for Status {
    fn healthy(&self) -> Result<(), String> {
        Ok(())
    }

    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

pub fn run(args: Args) -> Result<()> {
    // First, before any thread exists: every thread must block the termination signals.
    let termination = Termination::block().context("blocking SIGTERM")?;
    args.logging.init()?;
    let options = Options {
        cluster_resource_namespace: args.cluster_resource_namespace,
        default_issuer: args.default_issuer_name.map(|name| IssuerRef {
            name,
            kind: Some(args.default_issuer_kind),
            group: Some(args.default_issuer_group),
        }),
        acme_solver_image: args.acme_solver_image,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("certs")
        .build()?;
    let status = weft_daemon::http::start(args.status, Arc::new(Status), Registry::default())
        .with_context(|| format!("binding {}", args.status))?;
    termination.on_signal(|signal| {
        tracing::info!(%signal, "terminating");
        std::process::exit(0);
    })?;
    runtime.block_on(async {
        let (client, server) = weft_kube::client(&args.api.options()).await?;
        tracing::info!(%server, %status, "following Issuers, Certificates, CertificateRequests and Ingresses");
        controller::run(client, options).await;
        Ok(())
    })
}

#[derive(clap::Args)]
pub struct SolverArgs {
    #[arg(long, default_value_t = 8089)]
    listen_port: u16,
    /// The challenge's host.
    #[arg(long)]
    domain: String,
    #[arg(long)]
    token: String,
    /// The key authorization served for the token.
    #[arg(long)]
    key: String,
}

/// `weft acme-solver`: serves one HTTP-01 key authorization until killed.
pub fn solver(args: SolverArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.listen_port))
            .await
            .with_context(|| format!("binding port {}", args.listen_port))?;
        let challenge = weft_certs::acme_solver::Challenge {
            domain: args.domain,
            token: args.token,
            key: args.key,
        };
        weft_certs::acme_solver::serve(listener, challenge)
            .await
            .context("serving the challenge")
    })
}
