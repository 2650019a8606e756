//! The pod subresources that reach into the pod runtime: `log` (whole, tailed, followed).

use crate::api::{Api, Call};
use crate::body::{Body, full, stream};
use crate::request::Target;
use crate::status::ApiError;
use hyper::Response;
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use std::io::{Read, Seek, SeekFrom};
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
            let main: Vec<&str> = pod.spec.iter().flat_map(|s| &s.containers).map(|c| c.name.as_str()).collect();
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
    let cluster = api.cluster.clone();
    let key = weft_model::Key::new("Pod", pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or_default());
    let uid = pod.metadata.uid.clone();
    let path = file.unwrap_or_default();
    tokio::spawn(async move {
        if tx.send(Bytes::from(text)).await.is_err() {
            return;
        }
        let mut offset = read;
        loop {
            let more = read_from(&path, &mut offset);
            if !more.is_empty() && tx.send(Bytes::from(more)).await.is_err() {
                return;
            }
            // The log ends with the pod (this incarnation of it).
            let snap = cluster.snapshot();
            if !matches!(snap.get(&key), Some(o) if o.meta().uid == uid) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(response)
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
