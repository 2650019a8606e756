//! The last flows of a node, oldest first, with a sequence number each: readers ask for what came after the
//! last one they saw and followers wait for more. Old flows are overwritten, as Hubble's ring buffer does.

use super::record::Flow;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

pub struct Ring {
    capacity: usize,
    inner: Mutex<Inner>,
    grew: Condvar,
}

struct Inner {
    flows: VecDeque<Arc<Flow>>,
    /// The sequence number the next flow gets (the first is 1, so `after=0` means "everything").
    next: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                flows: VecDeque::with_capacity(capacity.clamp(1, 1 << 16)),
                next: 1,
            }),
            grew: Condvar::new(),
        }
    }

    /// Adds flows (their `seq` is set here) and wakes the followers.
    pub fn extend(&self, flows: impl IntoIterator<Item = Flow>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for mut flow in flows {
            flow.seq = inner.next;
            inner.next += 1;
            if inner.flows.len() == self.capacity {
                inner.flows.pop_front();
            }
            inner.flows.push_back(Arc::new(flow));
        }
        drop(inner);
        self.grew.notify_all();
    }

    /// The flows after sequence number `seq`, oldest first.
    pub fn after(&self, seq: u64) -> Vec<Arc<Flow>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        since(&inner, seq)
    }

    /// As [`Ring::after`], waiting up to `timeout` for one when there is none yet.
    pub fn wait_after(&self, seq: u64, timeout: Duration) -> Vec<Arc<Flow>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (inner, _) = self
            .grew
            .wait_timeout_while(inner, timeout, |inner| inner.next <= seq + 1)
            .unwrap_or_else(PoisonError::into_inner);
        since(&inner, seq)
    }
}

fn since(inner: &Inner, seq: u64) -> Vec<Arc<Flow>> {
    // Sequence numbers are consecutive, so the position of the first one wanted is arithmetic.
    let first = inner.next - inner.flows.len() as u64;
    let skip = seq.saturating_add(1).saturating_sub(first) as usize;
    inner.flows.iter().skip(skip).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::record::{Event, Kind, Peer, Verdict};

    fn flow(port: u16) -> Flow {
        let peer = Peer {
            ip: [10, 0, 0, 1].into(),
            port,
            kind: Kind::World,
            namespace: None,
            name: None,
            node: None,
        };
        Flow {
            seq: 0,
            time: 0,
            node: "n".into(),
            event: Event::New,
            verdict: Verdict::Forwarded,
            protocol: "TCP".into(),
            source: peer.clone(),
            destination: peer,
            service: None,
            policy: None,
            counters: None,
        }
    }

    #[test]
    fn keeps_the_last_flows_and_resumes_after_a_sequence_number() {
        let ring = Ring::new(3);
        ring.extend((1..=5).map(flow));
        let ports = |flows: Vec<Arc<Flow>>| flows.iter().map(|f| (f.seq, f.source.port)).collect::<Vec<_>>();
        assert_eq!(ports(ring.after(0)), [(3, 3), (4, 4), (5, 5)]);
        assert_eq!(ports(ring.after(4)), [(5, 5)]);
        assert!(ring.after(5).is_empty());
        assert!(ring.wait_after(5, Duration::from_millis(1)).is_empty());
    }

    #[test]
    fn a_follower_wakes_when_a_flow_arrives() {
        let ring = Arc::new(Ring::new(8));
        let writer = ring.clone();
        let follower = std::thread::spawn(move || ring.wait_after(0, Duration::from_secs(30)));
        writer.extend([flow(7)]);
        let got = follower.join().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source.port, 7);
    }
}
