//! The flags of a component that follows the Kubernetes API (`weft agent`, `weft dns`).

use std::path::PathBuf;
use weft_kube::ClientOptions;

#[derive(clap::Args)]
pub struct ApiArgs {
    /// The kubeconfig to reach the API with (default: the pod's service account in a pod, else $KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Requests per second to the API, sustained (as kube-proxy's --kube-api-qps).
    #[arg(long, default_value_t = ClientOptions::default().qps)]
    pub kube_api_qps: u32,
    /// Requests to the API that may go at once after a quiet spell.
    #[arg(long, default_value_t = ClientOptions::default().burst)]
    pub kube_api_burst: u32,
}

impl ApiArgs {
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            kubeconfig: self.kubeconfig.clone(),
            qps: self.kube_api_qps,
            burst: self.kube_api_burst,
        }
    }
}
