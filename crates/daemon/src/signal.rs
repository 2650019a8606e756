//! SIGTERM and SIGINT, taken by a thread of their own. A container's first process (PID 1 of its pid namespace)
//! is not killed by a signal it has no handler for, so without this `kubectl delete pod` would wait out the whole
//! grace period; and a component gets to say in its log that it stops and what it leaves behind.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// The termination signals, blocked in every thread: the waiter takes them with `sigwait`.
pub struct Termination {
    set: SigSet,
}

impl Termination {
    /// Blocks SIGTERM and SIGINT in the calling thread and in every thread it starts from now on. Call it first
    /// in `main`, before any thread exists (a thread started earlier would be killed by them). Child processes
    /// start with an empty mask again (std resets it).
    pub fn block() -> nix::Result<Termination> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        Ok(Termination { set })
    }

    /// Runs `then` on a thread of its own when the first of them arrives.
    pub fn on_signal(self, then: impl FnOnce(Signal) + Send + 'static) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("termination".into())
            .spawn(move || {
                // sigwait fails only for a set of invalid signals.
                if let Ok(signal) = self.set.wait() {
                    then(signal);
                }
            })
            .map(drop)
    }
}
