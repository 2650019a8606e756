//! weft-cni: one binary serving the CNI plugin types bridge, host-local, loopback, portmap, bandwidth and
//! weft. `main.rs` only calls [`run`]; everything is here so tests and fuzz targets reach the parsers.

pub mod firewall;
pub mod ipam;
pub mod plugins;
pub mod spec;
pub mod state;
