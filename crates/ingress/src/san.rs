//! Verifying an upstream's certificate for subject alternative names other than the name it was dialled by
//! (BackendTLSPolicy's `subjectAltNames`): the chain must lead to one of the roots, and the certificate must
//! hold one of the names: a DNS name (matched as webpki matches a server name, wildcards included) or a URI
//! (SPIFFE IDs and the like: the same text). The server name sent is still the policy's hostname.

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};
use std::sync::Arc;

/// A name an upstream's certificate may be verified for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AltName {
    Dns(String),
    Uri(String),
}

/// A verifier that takes a certificate chained to `roots` holding one of `names`.
pub fn verifier(
    roots: Arc<RootCertStore>,
    names: Vec<AltName>,
    provider: &CryptoProvider,
) -> Arc<dyn ServerCertVerifier> {
    let algorithms = provider.signature_verification_algorithms;
    weft_tls::checked_by(provider, move |end_entity, intermediates, now| {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(&cert, &roots, intermediates, now, algorithms.all)?;
        let uris = uris(end_entity);
        let held = names.iter().any(|name| match name {
            AltName::Dns(dns) => ServerName::try_from(dns.as_str())
                .is_ok_and(|name| rustls::client::verify_server_name(&cert, &name).is_ok()),
            AltName::Uri(uri) => uris.iter().any(|u| u == uri),
        });
        match held {
            true => Ok(()),
            false => Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)),
        }
    })
}

/// The URIs among a certificate's subject alternative names.
fn uris(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(names)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}
