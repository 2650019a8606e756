//! nftables rules owned by weft-cni (being written).
