//! Reading Secrets: a missing one is None, not an error.

use kube::{Api, Client};
use weft_model::k8s_openapi::api::core::v1::Secret;

pub async fn get(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
    Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await
}

/// A data key as text (None when absent, empty or not UTF-8).
pub fn text<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = &secret.data.as_ref()?.get(key)?.0;
    std::str::from_utf8(bytes).ok().filter(|t| !t.trim().is_empty())
}
