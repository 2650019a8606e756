//! The pod subresources that reach into the pod runtime: `log` (whole, tailed, followed), and what the
//! streaming ones (`remotecommand`, `portforward`) share: a running pod, a followed log.

use crate::api::{Api, Call};
use crate::body::{Body, full, stream};
use crate::cluster::Cluster;
use crate::request::Target;
use crate::status::ApiError;
use hyper::Response;
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_model::{Object, Snapshot, k8s_openapi};

/// How often a followed log is checked for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The pod a target names.
pub fn pod<'a>(snap: &'a Snapshot, target: &Target) -> Result<&'a Pod, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    match snap.get(&weft_model::Key::new("Pod", target.namespace.as_deref(), name)) {
        Some(Object::Pod(p)) => Ok(p),
        _ => Err(ApiError::not_found("pods", name)),
    }
}

/// The container a request names, or the pod's only one; kube-apiserver's messages otherwise.
pub fn container(pod: &Pod, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .map(|c| c.name.as_str())
        .collect();
    match asked {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<&str> = pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .map(|c| c.name.as_str())
                .collect();
            match main.as_slice() {
                [only] => Ok(only.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

pub async fn log(api: &Api, call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let pod = pod(snap, target)?;
    let container = container(pod, call.query.get("container").map(String::as_str))?;
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        match call.query.get(name) {
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{name}: invalid value {v:?}"))),
            None => Ok(None),
        }
    };
    let tail = number("tailLines")?;
    let limit = number("limitBytes")?;
    let previous = call.query.get("previous").is_some_and(|v| v == "true");
    let follow = call.query.get("follow").is_some_and(|v| v == "true");
    let file = api.cluster.log_file(pod, &container, previous);
    let mut text = match &file {
        Some(f) => std::fs::read(f).unwrap_or_default(),
        None if previous => {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{}\" not found",
                pod.metadata.name.as_deref().unwrap_or_default()
            )));
        }
        None => Vec::new(),
    };
    let read = text.len() as u64;
    if let Some(n) = tail {
        text = last_lines(&text, n as usize).to_vec();
    }
    if let Some(n) = limit {
        text.truncate(n as usize);
    }
    if !follow || file.is_none() {
        return Ok(Response::builder()
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(full(text))
            .unwrap_or_default());
    }
    let (tx, response) = stream("text/plain");
    let mut follow = Follow::new(api.cluster.clone(), pod, file.unwrap_or_default());
    follow.offset = read;
    tokio::spawn(async move {
        if tx.send(Bytes::from(text)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                more = follow.next() => {
                    let Some(more) = more else { return };
                    if tx.send(Bytes::from(more)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(response)
}

/// Refuses pods whose containers do not run: there is nothing to exec into, attach to or forward to.
pub fn running(pod: &Pod) -> Result<(), ApiError> {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    if phase == "Running" {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "unable to upgrade connection: pod {} is not running (phase {phase})",
        pod.metadata.name.as_deref().unwrap_or_default()
    )))
}

/// A container's log file read as it grows, for as long as the pod (this incarnation of it) exists, or with
/// `until_restart` as long as the container's current run.
pub struct Follow {
    cluster: Arc<dyn Cluster>,
    key: weft_model::Key,
    uid: Option<String>,
    path: PathBuf,
    offset: u64,
    /// The container, and when its followed run started.
    run: Option<(String, Time)>,
}

impl Follow {
    pub fn new(cluster: Arc<dyn Cluster>, pod: &Pod, path: PathBuf) -> Follow {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        Follow {
            cluster,
            key: weft_model::Key::new("Pod", pod.metadata.namespace.as_deref(), name),
            uid: pod.metadata.uid.clone(),
            path,
            offset: 0,
            run: None,
        }
    }

    /// Ends the follow when `container`'s current run does (it exits or restarts), as an attach session ends;
    /// a container not reported running yet is followed as long as its pod.
    pub fn until_restart(mut self, pod: &Pod, container: &str) -> Follow {
        self.run = running_since(pod, container).map(|since| (container.to_string(), since.clone()));
        self
    }

    /// Skips what is written already.
    pub fn skip_to_end(&mut self) {
        self.offset = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or_default();
    }

    /// What was appended since the last call, waiting for it; None once the pod (or the followed run) is gone
    /// and what it wrote is read.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            // Looked at before reading: whatever was written before the end was seen is read.
            let alive = self.alive();
            let more = read_from(&self.path, &mut self.offset);
            if !more.is_empty() {
                return Some(more);
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            if !alive {
                // One more look: a terminal's last output reaches the log through a copy, after the exit.
                let last = read_from(&self.path, &mut self.offset);
                return (!last.is_empty()).then_some(last);
            }
        }
    }

    fn alive(&self) -> bool {
        match self.cluster.snapshot().get(&self.key) {
            Some(Object::Pod(p)) => {
                p.metadata.uid == self.uid
                    && self
                        .run
                        .as_ref()
                        .is_none_or(|(c, since)| running_since(p, c) == Some(since))
            }
            _ => false,
        }
    }
}

/// When the current run of `container` started, if it is running.
fn running_since<'a>(pod: &'a Pod, container: &str) -> Option<&'a Time> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses.iter().find(|s| s.name == container)?;
    status.state.as_ref()?.running.as_ref()?.started_at.as_ref()
}

/// The last `n` lines of `text`.
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if n == 0 { &text[text.len()..] } else { &text[start..] }
}

/// What was appended to `path` since `offset`.
fn read_from(path: &std::path::Path, offset: &mut u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(*offset)).is_ok()
        && f.read_to_end(&mut out).is_ok()
    {
        *offset += out.len() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_count_lines_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }
}
