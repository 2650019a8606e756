//! The `weft` command line.

mod agent;
mod api_args;
mod bench;
mod capture;
mod certs;
mod client;
mod crds;
mod dns;
mod expose;
mod gateway;
mod ingress;
mod lab;
mod logging;
mod objects;
mod observe;
mod pods;
mod policy;
mod probe;
mod serve;
mod table;
mod trace;
mod ui;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Kubernetes pod networking: CNI plugin, node agent, lab"
)]
struct Cli {
    /// Which lab to talk to.
    #[arg(long, global = true, env = "WEFT_LAB", default_value = weft_lab::spec::DEFAULT_LAB)]
    lab: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build, inspect and remove a lab: a whole cluster network on this host.
    Lab {
        #[command(subcommand)]
        what: lab::LabCmd,
    },
    /// Create or update objects from manifests.
    Apply(objects::ApplyArgs),
    /// List objects, as a table or as Kubernetes JSON/YAML.
    Get(objects::GetArgs),
    /// Delete objects by KIND NAME or from manifests.
    Delete(objects::DeleteArgs),
    /// Make a Service for a Deployment, Pod or Service (selector and ports taken from it).
    Expose(expose::Args),
    /// Run a command inside a pod (its network, hostname, resolv.conf and hosts).
    Exec(pods::ExecArgs),
    /// Print a container's output.
    Logs(pods::LogsArgs),
    /// Would SRC reach DST:PORT[/PROTO], and which Service and NetworkPolicy rules decide it.
    Trace(trace::Args),
    /// The flows of every node (conntrack and policy drops, named): `hubble observe` for weft.
    Observe(observe::Args),
    /// A picture of the lab in a browser: nodes, pods, Services, policies and live flows (served on 127.0.0.1).
    Ui(ui::Args),
    /// NetworkPolicy tools.
    Policy {
        #[command(subcommand)]
        what: policy::PolicyCmd,
    },
    /// The node agent: overlay routes and the node's CNI settings.
    Agent(agent::Args),
    /// The cluster DNS server (the role of CoreDNS): Services, endpoints and pods as DNS records.
    Dns(dns::Args),
    /// The Ingress controller: HTTP and HTTPS routing to Services by the Ingresses of its classes.
    Ingress(ingress::Args),
    /// The certificate controller: cert-manager's Issuers, Certificates and CertificateRequests, and Ingresses'
    /// certificates by annotation.
    Certs(certs::Args),
    /// An ACME HTTP-01 solver pod's server (what `weft certs` runs in solver pods, as cert-manager's acmesolver).
    #[command(hide = true)]
    AcmeSolver(certs::SolverArgs),
    /// Print the CustomResourceDefinitions of weft's own kinds (what deploy/crds.yaml holds).
    Crds(crds::Args),
    /// Measure weft's components and print the figures.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
    /// Serve HTTP on TCP ports and echo on UDP ports, answering who and where this pod is.
    Serve(serve::Args),
    /// One connection attempt to a URL, tcp://IP:PORT or udp://IP:PORT; exit 0 when it answered.
    Probe(probe::Args),
}

fn main() {
    let cli = Cli::parse();
    let paths = weft_lab::spec::Paths::new(&cli.lab);
    let outcome = match cli.command {
        Cmd::Lab { what } => lab::run(&cli.lab, what),
        Cmd::Apply(args) => objects::apply(&paths, args).map(|()| 0),
        Cmd::Get(args) => objects::get(&paths, args).map(|()| 0),
        Cmd::Delete(args) => objects::delete(&paths, args).map(|()| 0),
        Cmd::Expose(args) => expose::run(&paths, args).map(|()| 0),
        Cmd::Exec(args) => pods::exec(&paths, args),
        Cmd::Logs(args) => pods::logs(&paths, args).map(|()| 0),
        Cmd::Trace(args) => trace::run(&paths, args),
        Cmd::Observe(args) => observe::run(&paths, args),
        Cmd::Ui(args) => ui::run(&paths, args),
        Cmd::Policy { what } => policy::run(&paths, what),
        Cmd::Agent(args) => agent::run(args).map(|()| 0),
        Cmd::Dns(args) => dns::run(args).map(|()| 0),
        Cmd::Ingress(args) => ingress::run(args).map(|()| 0),
        Cmd::Certs(args) => certs::run(args).map(|()| 0),
        Cmd::AcmeSolver(args) => certs::solver(args).map(|()| 0),
        Cmd::Crds(args) => crds::run(args).map(|()| 0),
        Cmd::Bench { what } => bench::run(what).map(|()| 0),
        Cmd::Serve(args) => serve::run(args).map(|()| 0),
        Cmd::Probe(args) => probe::run(args).map(|()| 0),
    };
    match outcome {
        Ok(code) => std::process::exit(code),
        // The server's refusals print as kubectl prints them.
        Err(e) if e.downcast_ref::<client::ServerError>().is_some() => {
            eprintln!("{e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
