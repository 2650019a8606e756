//! The Kubernetes API a lab serves, so that the real kubectl and kube-rs drive it unchanged: HTTPS with client
//! certificates, discovery and OpenAPI, list/get/create/update/patch/delete/watch with server-side tables, and
//! the pod subresources, over a store the lab keeps.
pub mod jsonpath;
pub mod table;
