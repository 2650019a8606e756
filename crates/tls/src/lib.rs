//! rustls pieces weft's TLS clients share. [`unverified`] is the verifier of a client told not to verify the
//! server (an ACME issuer's `skipTLSVerify`, weft ingress's upstreams without `proxy-ssl-verify`): it takes any
//! certificate but still checks the handshake's signatures, so the connection is encrypted to the key of the
//! certificate the server sent. [`checked_by`] is the same with a certificate check of the caller's.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// A verifier that takes any certificate, checking signatures with `provider`'s algorithms.
pub fn unverified(provider: &CryptoProvider) -> Arc<dyn ServerCertVerifier> {
    checked_by(provider, |_, _, _| Ok(()))
}

/// A verifier whose certificate check is `check` (of the end entity, the intermediates and the time; the server
/// name it is given is not looked at), checking signatures with `provider`'s algorithms.
pub fn checked_by<F>(provider: &CryptoProvider, check: F) -> Arc<dyn ServerCertVerifier>
where
    F: Fn(&CertificateDer<'_>, &[CertificateDer<'_>], UnixTime) -> Result<(), rustls::Error> + Send + Sync + 'static,
{
    Arc::new(Checked {
        algorithms: provider.signature_verification_algorithms,
        check,
    })
}

struct Checked<F> {
    algorithms: WebPkiSupportedAlgorithms,
    check: F,
}

impl<F> std::fmt::Debug for Checked<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checked")
    }
}

impl<F> ServerCertVerifier for Checked<F>
where
    F: Fn(&CertificateDer<'_>, &[CertificateDer<'_>], UnixTime) -> Result<(), rustls::Error> + Send + Sync,
{
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.check)(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
