//! weft-cni: one binary serving the CNI plugin types bridge, host-local, loopback, portmap, bandwidth and
//! weft. `main.rs` only calls [`run::main`]; everything is here so tests and fuzz targets reach the parsers.

pub mod attach;
pub mod delegate;
pub mod detach;
pub mod firewall;
pub mod ipam;
pub mod journal;
pub mod plugins;
pub mod run;
pub mod spec;
pub mod state;
