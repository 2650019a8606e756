//! Flows, as Hubble's observer keeps them, from what the node's kernel reports without eBPF: conntrack's new
//! and destroyed connections (with the service proxy's translation and, with accounting on, their counters)
//! and the packets the policy table's drop rules log to NFLOG group [`weft_policy::plan::DROP_LOG_GROUP`].
//! Each is named from the cluster state the agent follows, kept in a ring of the last few thousand and served
//! on the agent's HTTP port (`endpoint.rs`). See docs/observe.md.

mod collect;
mod endpoint;
pub mod names;
pub mod record;
pub mod ring;

pub use record::{Counters, Event, Flow, Kind, Peer, PolicyRef, ServiceRef, Verdict};

use ring::Ring;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use weft_daemon::{Collect, Exposition};
use weft_model::Snapshot;

/// How many flows a node keeps by default (Hubble's default ring holds 4095).
pub const CAPACITY: usize = 4096;

/// A node's flows: the ring, the cluster state they are named from, and counts for `/metrics`.
pub struct Flows {
    node: String,
    ring: Ring,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    seen: AtomicU64,
    lost: AtomicU64,
}

impl Flows {
    pub fn new(node: &str, capacity: usize) -> Arc<Flows> {
        Arc::new(Flows {
            node: node.to_string(),
            ring: Ring::new(capacity),
            snapshot: Mutex::new(None),
            seen: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        })
    }

    /// The cluster state new flows are named from (the agent's loop hands over each snapshot it syncs).
    pub fn follow(&self, snap: Arc<Snapshot>) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = Some(snap);
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Subscribes to the kernel's events in the calling thread's network namespace (turning conntrack
    /// accounting on there, for counters) and collects them on a thread of its own.
    pub fn start(self: &Arc<Flows>) -> Result<(), String> {
        // Counters only exist on connections made while accounting is on; best effort (read-only /proc/sys).
        if let Err(e) = weft_netlink::sysctl::set("net/netfilter/nf_conntrack_acct", "1") {
            tracing::warn!(error = %e, "flows will have no byte and packet counters");
        }
        let events = weft_netlink::flow_events::FlowEvents::open(true, Some(weft_policy::plan::DROP_LOG_GROUP))
            .map_err(|e| format!("subscribing to conntrack and NFLOG events: {e}"))?;
        let flows = self.clone();
        std::thread::Builder::new()
            .name("flows".into())
            .spawn(move || collect::run(events, &flows))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The flows after sequence number `seq` (0: all kept), oldest first.
    pub fn after(&self, seq: u64) -> Vec<Arc<Flow>> {
        self.ring.after(seq)
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Collect for Flows {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            "weft_agent_flows_total",
            "Flows recorded (conntrack events and logged policy drops).",
            self.seen.load(Ordering::Relaxed),
        );
        out.counter(
            "weft_agent_flow_events_lost_total",
            "Times the kernel dropped flow events that did not fit the socket's buffer.",
            self.lost.load(Ordering::Relaxed),
        );
    }
}

pub use endpoint::Endpoint;
