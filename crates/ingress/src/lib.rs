//! weft's Ingress controller (`weft ingress`): Ingress objects of its classes become an immutable routing table
//! (`table`), which an HTTP/1.1 and HTTP/2 reverse proxy with TLS termination serves (`proxy`, `server` with `h1`, `tls`),
//! swapped whole on every change of the cluster (`follow`); `status` is what the served Ingresses' status should
//! say.

pub mod affinity;
pub mod annotations;
mod apr1;
pub mod auth;
pub mod backend;
pub mod body;
pub mod class;
pub mod connect;
pub mod cors;
pub mod errors;
pub mod follow;
pub mod gateway;
pub mod graceful;
pub mod guards;
mod h1;
pub mod host;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod proxy_protocol;
pub mod proxyssl;
pub mod ratelimit;
pub mod san;
pub mod server;
pub mod status;
pub mod table;
pub mod tls;
pub mod upgrade;
pub mod upstream;

pub use table::{Config, Problem, Route, Table, Target};
