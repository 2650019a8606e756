//! Graceful shutdown of a listener's connections: once `shutdown` is called, each connection finishes what it is
//! doing (a request in flight, HTTP/2 streams after a GOAWAY) and closes instead of waiting for another request;
//! `shutdown` returns when all have closed. hyper-util has the same for hyper's connections only; weft's own
//! HTTP/1.1 connections (`h1`) need it too.

use tokio::sync::watch;

/// The listener's side: makes watchers, and tells them all to stop.
pub struct Graceful {
    stop: watch::Sender<bool>,
}

/// A connection's side: whether, and when, its listener stops.
pub struct Watcher(watch::Receiver<bool>);

impl Default for Graceful {
    fn default() -> Self {
        Graceful {
            stop: watch::Sender::new(false),
        }
    }
}

impl Graceful {
    pub fn new() -> Graceful {
        Graceful::default()
    }

    pub fn watcher(&self) -> Watcher {
        Watcher(self.stop.subscribe())
    }

    /// Tells every connection to finish, then waits until each has (dropped its watcher).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.stop.closed().await;
    }
}

impl Watcher {
    /// Resolves once the listener stops.
    pub async fn stopping(&mut self) {
        // An error is a listener that is gone without `shutdown`: stopping as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_tells_every_watcher_and_waits_for_them() {
        let graceful = Graceful::new();
        let mut watcher = graceful.watcher();
        assert!(!watcher.is_stopping());
        let connection = tokio::spawn(async move {
            watcher.stopping().await;
            assert!(watcher.is_stopping());
        });
        graceful.shutdown().await;
        connection.await.unwrap();
    }
}
