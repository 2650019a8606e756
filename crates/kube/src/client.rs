//! The Kubernetes API client every weft component uses: where its configuration comes from, and a client-side rate
//! limit on its requests (client-go's QPS and burst), so that a component restarting its watches in a loop, or all
//! the agents of a large cluster relisting at once, cannot flood the API server.

use crate::source::Error;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::PathBuf;
use std::time::Duration;
use tower::limit::RateLimitLayer;

/// How a component reaches the API.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The kubeconfig to use; without one, the pod's service account when the component runs in a pod, else
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Requests per second, sustained (watches count once, when they are started or resumed).
    pub qps: u32,
    /// Requests that may go at once after a quiet spell.
    pub burst: u32,
}

impl Default for ClientOptions {
    /// Twice client-go's defaults (5 and 10): a relist of 10,000 objects is 20 pages per kind.
    fn default() -> ClientOptions {
        ClientOptions {
            kubeconfig: None,
            qps: 10,
            burst: 20,
        }
    }
}

/// The client `options` describe, and the server's URL (for messages).
pub async fn client(options: &ClientOptions) -> Result<(Client, String), Error> {
    let config = config(options).await?;
    let server = config.cluster_url.to_string();
    let (calls, per) = window(options.qps, options.burst);
    let client = ClientBuilder::try_from(config)
        .map_err(|e| Error::Client(e.to_string()))?
        .with_layer(&RateLimitLayer::new(calls, per))
        .build();
    Ok((client, server))
}

/// tower's rate limit lets `calls` requests through per window of `per`: a window of `burst` requests lasting
/// `burst / qps` gives the same sustained rate and the same largest burst as a token bucket.
fn window(qps: u32, burst: u32) -> (u64, Duration) {
    let qps = qps.max(1);
    let burst = burst.max(1);
    (
        u64::from(burst),
        Duration::from_secs_f64(f64::from(burst) / f64::from(qps)),
    )
}

/// The configuration: an explicit kubeconfig, else the pod's service account (in a pod, `~/.kube/config` would be
/// the node's own file, not this component's identity), else the user's kubeconfig.
async fn config(options: &ClientOptions) -> Result<Config, Error> {
    if let Some(path) = &options.kubeconfig {
        let failed = |msg: String| Error::Kubeconfig {
            path: path.display().to_string(),
            msg,
        };
        let file = Kubeconfig::read_from(path).map_err(|e| failed(e.to_string()))?;
        return Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|e| failed(e.to_string()));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && let Ok(config) = Config::incluster()
    {
        return Ok(config);
    }
    Config::infer().await.map_err(|e| Error::Infer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_sustained_rate_and_the_burst() {
        assert_eq!(window(10, 20), (20, Duration::from_secs(2)));
        assert_eq!(window(50, 100), (100, Duration::from_secs(2)));
        // Zero would stop every request: at least one per second.
        assert_eq!(window(0, 0), (1, Duration::from_secs(1)));
    }
}
