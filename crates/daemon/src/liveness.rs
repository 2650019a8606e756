//! Whether a component's loop is stuck. Its loop waits for the next snapshot for as long as the cluster does not
//! change, so "the last turn was recent" cannot tell stuck from idle; instead each turn of work is marked, and
//! the loop is stuck when one turn has run longer than a limit (a hung netlink call, an `nft` that never ends).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Liveness {
    /// The turn in progress: what, and since when.
    busy: Mutex<Option<(&'static str, Instant)>>,
    idle: Condvar,
    limit: Duration,
}

impl Liveness {
    /// Stuck when a turn runs longer than `limit`.
    pub fn new(limit: Duration) -> Liveness {
        Liveness {
            busy: Mutex::new(None),
            idle: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<(&'static str, Instant)>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a turn of work (`what`, e.g. "services sync") until the guard is dropped.
    pub fn turn(&self, what: &'static str) -> Turn<'_> {
        *self.lock() = Some((what, Instant::now()));
        Turn(self)
    }

    /// `Err` naming the turn that has run past the limit.
    pub fn check(&self) -> Result<(), String> {
        match *self.lock() {
            Some((what, since)) if since.elapsed() > self.limit => Err(format!(
                "{what} running for {:.0?} (limit {:.0?})",
                since.elapsed(),
                self.limit
            )),
            _ => Ok(()),
        }
    }

    /// Waits until no turn is in progress, or `timeout` has passed; true when idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let (busy, _) = self
            .idle
            .wait_timeout_while(self.lock(), timeout, |busy| busy.is_some())
            .unwrap_or_else(|e| e.into_inner());
        busy.is_none()
    }
}

/// A turn of work in progress; dropping it ends the turn.
pub struct Turn<'a>(&'a Liveness);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
        self.0.idle.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_past_the_limit_is_stuck_and_idle_is_not() {
        let live = Liveness::new(Duration::ZERO);
        assert!(live.check().is_ok(), "idle is alive, however long");
        let turn = live.turn("services sync");
        let deadline = Instant::now() + Duration::from_secs(5);
        let why = loop {
            match live.check() {
                Err(why) => break why,
                Ok(()) => assert!(Instant::now() < deadline, "never stuck"),
            }
        };
        assert!(why.starts_with("services sync running for"), "{why}");
        assert!(!live.wait_idle(Duration::from_millis(1)));
        drop(turn);
        assert!(live.check().is_ok());
        assert!(live.wait_idle(Duration::ZERO));
    }

    #[test]
    fn waiting_for_idle_ends_with_the_turn() {
        let live = std::sync::Arc::new(Liveness::new(Duration::from_secs(60)));
        let turn = live.turn("sync");
        let waiter = {
            let live = live.clone();
            std::thread::spawn(move || live.wait_idle(Duration::from_secs(30)))
        };
        drop(turn);
        assert!(waiter.join().unwrap());
    }
}
