//! Certificates of HTTPS listeners: each Gateway pod port picks, per handshake, the certificate of the listener
//! whose hostname covers the SNI (the most specific), else of its first listener that has one.

use crate::table::Table;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

#[derive(Debug)]
pub struct Resolver {
    pub table: Arc<ArcSwap<Table>>,
    /// The pod port the listener is on.
    pub port: u16,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let port = table.gateways().port(self.port)?;
        let by_name = hello
            .server_name()
            .map(|n| n.to_ascii_lowercase())
            .and_then(|n| port.listener(&n).and_then(|l| l.certificate()).cloned());
        by_name.or_else(|| port.listeners.iter().find_map(|l| l.certificate()).cloned())
    }
}
