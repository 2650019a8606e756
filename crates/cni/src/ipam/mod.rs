//! host-local IPAM (being written).
