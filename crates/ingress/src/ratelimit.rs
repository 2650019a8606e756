//! `limit-rps`, `limit-rpm`, `limit-connections`, `limit-burst-multiplier` and `limit-whitelist`: ingress-nginx's
//! per-client limits, one set per Ingress (its zone), kept across table swaps. Requests are counted per client
//! address as nginx's `limit_req ... burst=RATE*MULTIPLIER nodelay`: a client may send the burst at once, then
//! the rate; `limit-connections` bounds the requests a client has in flight (nginx's `limit_conn` counts
//! connections with a request being served). Over a limit the answer is 503, ingress-nginx's
//! `limit-req-status-code` and `limit-conn-status-code` default. The GCRA of `governor` keeps the rates.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// ingress-nginx's `limit-burst-multiplier` default.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;
/// Checks between two sweeps of the clients whose rate state has run out (so the maps do not grow forever).
const SWEEP_EVERY: u32 = 4096;

/// What an Ingress's `limit-*` annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limits {
    pub rps: Option<NonZeroU32>,
    pub rpm: Option<NonZeroU32>,
    pub connections: Option<NonZeroU32>,
    pub burst_multiplier: NonZeroU32,
    /// Clients the limits do not apply to.
    pub whitelist: Vec<IpNet>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            rps: None,
            rpm: None,
            connections: None,
            burst_multiplier: NonZeroU32::new(DEFAULT_BURST_MULTIPLIER).unwrap_or(NonZeroU32::MIN),
            whitelist: Vec::new(),
        }
    }
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rps.is_some() || self.rpm.is_some() || self.connections.is_some()
    }

    /// nginx's burst is excess over the rate: the bucket holds one request more.
    fn quota(rate: NonZeroU32, multiplier: NonZeroU32, per_minute: bool) -> Quota {
        let burst = rate.saturating_mul(multiplier).saturating_add(1);
        let quota = if per_minute {
            Quota::per_minute(rate)
        } else {
            Quota::per_second(rate)
        };
        quota.allow_burst(burst)
    }
}

/// The state of one Ingress's limits.
pub struct Limiter {
    limits: Limits,
    per_second: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_minute: Option<DefaultKeyedRateLimiter<IpAddr>>,
    in_flight: Arc<Mutex<HashMap<IpAddr, u32>>>,
    checks: AtomicU32,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("limits", &self.limits).finish()
    }
}

/// A request counted in flight until dropped (with its response body).
#[derive(Debug)]
pub struct InFlight {
    client: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        let keyed = |rate: Option<NonZeroU32>, per_minute| {
            rate.map(|r| RateLimiter::dashmap(Limits::quota(r, limits.burst_multiplier, per_minute)))
        };
        Limiter {
            per_second: keyed(limits.rps, false),
            per_minute: keyed(limits.rpm, true),
            in_flight: Arc::default(),
            checks: AtomicU32::new(0),
            limits,
        }
    }

    /// Whether `client`'s request may be served now: `Err(())` over a limit (503), else what keeps it counted
    /// in flight (none without `limit-connections` or for a whitelisted client).
    #[allow(clippy::result_unit_err)]
    pub fn admit(&self, client: IpAddr) -> Result<Option<InFlight>, ()> {
        let client = crate::annotations::canonical(client);
        if self.limits.whitelist.iter().any(|net| net.contains(&client)) {
            return Ok(None);
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limiter in self.per_second.iter().chain(&self.per_minute) {
                limiter.retain_recent();
            }
        }
        for limiter in self.per_second.iter().chain(&self.per_minute) {
            limiter.check_key(&client).map_err(|_| ())?;
        }
        let Some(most) = self.limits.connections else {
            return Ok(None);
        };
        let mut counts = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(client).or_insert(0);
        if *n >= most.get() {
            return Err(());
        }
        *n += 1;
        Ok(Some(InFlight {
            client,
            counts: self.in_flight.clone(),
        }))
    }
}

/// The limiters of every Ingress, kept across tables so a swap does not forgive a client its burst.
#[derive(Default)]
pub struct Limiters(Mutex<HashMap<(String, Limits), Arc<Limiter>>>);

impl Limiters {
    /// The limiter of Ingress `ingress` (`namespace/name`) with `limits`: the same one while they do not change.
    pub fn of(&self, ingress: &str, limits: &Limits) -> Arc<Limiter> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.entry((ingress.to_string(), limits.clone()))
            .or_insert_with(|| Arc::new(Limiter::new(limits.clone())))
            .clone()
    }

    /// Drops the limiters of Ingresses not in `live` (`namespace/name`), or whose limits changed.
    pub fn retain(&self, live: &BTreeSet<(String, Limits)>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|key, _| live.contains(key));
    }
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[test]
    fn a_client_gets_the_burst_then_503_and_others_are_counted_apart() {
        let limiter = Limiter::new(Limits {
            rps: nz(1),
            burst_multiplier: NonZeroU32::new(2).unwrap(),
            whitelist: vec!["10.9.0.0/16".parse().unwrap()],
            ..Limits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        // rps 1, burst 2: three at once, the fourth is over.
        for _ in 0..3 {
            assert!(limiter.admit(a).is_ok());
        }
        assert!(limiter.admit(a).is_err());
        assert!(limiter.admit("10.0.0.2".parse().unwrap()).is_ok());
        // The same client on a dual-stack socket.
        assert!(limiter.admit("::ffff:10.0.0.1".parse().unwrap()).is_err());
        for _ in 0..20 {
            assert!(limiter.admit("10.9.1.1".parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn connections_count_requests_in_flight_until_dropped() {
        let limiter = Limiter::new(Limits {
            connections: nz(2),
            ..Limits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = limiter.admit(a).unwrap().unwrap();
        let _second = limiter.admit(a).unwrap().unwrap();
        assert!(limiter.admit(a).is_err());
        assert!(limiter.admit("10.0.0.2".parse().unwrap()).is_ok());
        drop(first);
        assert!(limiter.admit(a).is_ok());
    }

    #[test]
    fn limiters_survive_a_rebuild_unless_their_limits_change() {
        let limiters = Limiters::default();
        let limits = Limits {
            rps: nz(5),
            ..Limits::default()
        };
        let one = limiters.of("default/a", &limits);
        assert!(Arc::ptr_eq(&one, &limiters.of("default/a", &limits)));
        limiters.retain(&BTreeSet::new());
        assert!(!Arc::ptr_eq(&one, &limiters.of("default/a", &limits)));
    }
}
