//! Private keys: made as `spec.privateKey` asks (RSA by the `rsa` crate, since ring cannot generate RSA keys;
//! ECDSA and Ed25519 by ring through rcgen), written in the encoding asked (PKCS#1 means "RSA PRIVATE KEY" for RSA
//! and SEC1 "EC PRIVATE KEY" for ECDSA, as Go's crypto/x509 writes them), and read back in any of them.

use super::Error;
use crate::api::{CertificatePrivateKey, KeyAlgorithm, KeyEncoding};
use rcgen::KeyPair;
use rsa::pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use rsa::pkcs8::der::{Decode, Encode};
use rsa::pkcs8::spki::AlgorithmIdentifierRef;
use rsa::pkcs8::{EncodePrivateKey, PrivateKeyInfoRef};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The key a Certificate asks for: algorithm and size, defaulted as cert-manager does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub algorithm: KeyAlgorithm,
    pub size: u32,
    pub encoding: KeyEncoding,
}

impl KeySpec {
    /// `spec.privateKey` with cert-manager's defaults (RSA 2048, ECDSA 256, PKCS1); a size no algorithm has is an
    /// error.
    pub fn of(key: Option<&CertificatePrivateKey>) -> Result<KeySpec, Error> {
        let algorithm = key.and_then(|k| k.algorithm).unwrap_or_default();
        let encoding = key.and_then(|k| k.encoding).unwrap_or_default();
        let asked = key.and_then(|k| k.size).filter(|&s| s != 0);
        let size = match (algorithm, asked) {
            (KeyAlgorithm::RSA, None) => 2048,
            (KeyAlgorithm::RSA, Some(s @ (2048 | 3072 | 4096))) => s,
            (KeyAlgorithm::ECDSA, None) => 256,
            (KeyAlgorithm::ECDSA, Some(s @ (256 | 384))) => s,
            (KeyAlgorithm::Ed25519, _) => 0,
            (_, Some(s)) => return Err(Error::KeySize(format!("{algorithm:?}"), s)),
        };
        Ok(KeySpec {
            algorithm,
            size,
            encoding,
        })
    }

    /// Whether `key` is of this algorithm and size.
    pub fn matches(&self, key: &KeyPair) -> bool {
        let alg = key.algorithm();
        match self.algorithm {
            KeyAlgorithm::RSA => alg == &rcgen::PKCS_RSA_SHA256 && rsa_bits(key) == Some(self.size),
            KeyAlgorithm::ECDSA if self.size == 384 => alg == &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::ECDSA => alg == &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => alg == &rcgen::PKCS_ED25519,
        }
    }
}

/// The modulus length of an RSA key (its PKCS#1 public key is SEQUENCE { n, e }).
fn rsa_bits(key: &KeyPair) -> Option<u32> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let public = rsa::PublicKey::from_pkcs1_der(key.public_key_raw()).ok()?;
    Some(rsa::traits::PublicKeyParts::n(&public).bit_width())
}

/// A new private key (CPU-heavy for RSA: call it off the async threads).
pub fn generate(spec: KeySpec) -> Result<KeyPair, Error> {
    let alg = match (spec.algorithm, spec.size) {
        (KeyAlgorithm::RSA, bits) => {
            let key =
                rsa::PrivateKey::new(&mut getrandom::SysRng, bits as usize).map_err(|e| Error::Key(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| Error::Key(e.to_string()))?;
            return KeyPair::try_from(der.as_bytes()).map_err(Error::from);
        }
        (KeyAlgorithm::ECDSA, 384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        (KeyAlgorithm::ECDSA, _) => &rcgen::PKCS_ECDSA_P256_SHA256,
        (KeyAlgorithm::Ed25519, _) => &rcgen::PKCS_ED25519,
    };
    Ok(KeyPair::generate_for(alg)?)
}

/// The key as PEM in `encoding` (Ed25519 has no PKCS#1 form: always PKCS#8, as cert-manager writes it).
pub fn to_pem(key: &KeyPair, encoding: KeyEncoding) -> Result<String, Error> {
    let pkcs8 = key.serialized_der();
    if encoding == KeyEncoding::PKCS8 {
        return Ok(super::to_pem(&pem::Pem::new("PRIVATE KEY", pkcs8)));
    }
    let info = PrivateKeyInfoRef::from_der(pkcs8).map_err(der_error)?;
    let inner = info.private_key.as_bytes();
    if info.algorithm.oid == RSA_ENCRYPTION {
        Ok(super::to_pem(&pem::Pem::new("RSA PRIVATE KEY", inner)))
    } else if info.algorithm.oid == EC_PUBLIC_KEY {
        // PKCS#8 names the curve outside the SEC1 structure; on its own it names it inside.
        let curve: ObjectIdentifier = info
            .algorithm
            .parameters
            .ok_or_else(|| Error::Key("an EC key without its curve".into()))?
            .decode_as()
            .map_err(der_error)?;
        let mut ec = sec1::EcPrivateKey::from_der(inner).map_err(|e| Error::Key(e.to_string()))?;
        ec.parameters = Some(sec1::EcParameters::NamedCurve(curve));
        let der = ec.to_der().map_err(|e| Error::Key(e.to_string()))?;
        Ok(super::to_pem(&pem::Pem::new("EC PRIVATE KEY", der)))
    } else {
        Ok(super::to_pem(&pem::Pem::new("PRIVATE KEY", pkcs8)))
    }
}

/// Reads a PEM private key in any of the three encodings.
pub fn from_pem(text: &str) -> Result<KeyPair, Error> {
    let block = pem::parse(text).map_err(|e| Error::Key(e.to_string()))?;
    let pkcs8 = match block.tag() {
        "PRIVATE KEY" => block.contents().to_vec(),
        "RSA PRIVATE KEY" => wrap(RSA_ENCRYPTION, AnyRef::NULL, block.contents())?,
        "EC PRIVATE KEY" => {
            let ec = sec1::EcPrivateKey::from_der(block.contents()).map_err(|e| Error::Key(e.to_string()))?;
            let Some(sec1::EcParameters::NamedCurve(curve)) = ec.parameters else {
                return Err(Error::Key("an EC PRIVATE KEY without its curve".into()));
            };
            wrap(EC_PUBLIC_KEY, AnyRef::from(&curve), block.contents())?
        }
        other => return Err(Error::Key(format!("a PEM block {other:?} is no private key"))),
    };
    Ok(KeyPair::try_from(pkcs8.as_slice())?)
}

fn wrap(oid: ObjectIdentifier, parameters: AnyRef<'_>, key: &[u8]) -> Result<Vec<u8>, Error> {
    let algorithm = AlgorithmIdentifierRef {
        oid,
        parameters: Some(parameters),
    };
    let key = OctetStringRef::new(key).map_err(der_error)?;
    PrivateKeyInfoRef::new(algorithm, key).to_der().map_err(der_error)
}

fn der_error(e: rsa::pkcs8::der::Error) -> Error {
    Error::Key(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(algorithm: KeyAlgorithm, size: Option<u32>, encoding: KeyEncoding) -> KeySpec {
        let key = CertificatePrivateKey {
            algorithm: Some(algorithm),
            size,
            encoding: Some(encoding),
            rotation_policy: None,
        };
        KeySpec::of(Some(&key)).unwrap()
    }

    #[test]
    fn defaults_are_cert_managers() {
        let default = KeySpec::of(None).unwrap();
        assert_eq!(
            (default.algorithm, default.size, default.encoding),
            (KeyAlgorithm::RSA, 2048, KeyEncoding::PKCS1)
        );
        assert_eq!(spec(KeyAlgorithm::ECDSA, None, KeyEncoding::PKCS1).size, 256);
        let bad = CertificatePrivateKey {
            algorithm: Some(KeyAlgorithm::ECDSA),
            size: Some(521),
            ..Default::default()
        };
        assert!(KeySpec::of(Some(&bad)).is_err());
    }

    #[test]
    fn every_algorithm_and_encoding_round_trips_through_pem() {
        for (algorithm, size, label) in [
            (KeyAlgorithm::ECDSA, None, "EC PRIVATE KEY"),
            (KeyAlgorithm::ECDSA, Some(384), "EC PRIVATE KEY"),
            (KeyAlgorithm::Ed25519, None, "PRIVATE KEY"),
            (KeyAlgorithm::RSA, None, "RSA PRIVATE KEY"),
        ] {
            let wanted = spec(algorithm, size, KeyEncoding::PKCS1);
            let key = generate(wanted).unwrap();
            assert!(wanted.matches(&key), "{algorithm:?}");
            for (encoding, label) in [(KeyEncoding::PKCS1, label), (KeyEncoding::PKCS8, "PRIVATE KEY")] {
                let text = to_pem(&key, encoding).unwrap();
                assert!(text.starts_with(&format!("-----BEGIN {label}-----")), "{text}");
                let back = from_pem(&text).unwrap();
                assert_eq!(
                    back.public_key_raw(),
                    key.public_key_raw(),
                    "{algorithm:?} {encoding:?}"
                );
            }
        }
    }

    #[test]
    fn a_key_of_another_size_does_not_match() {
        let key = generate(spec(KeyAlgorithm::ECDSA, None, KeyEncoding::PKCS8)).unwrap();
        assert!(!spec(KeyAlgorithm::ECDSA, Some(384), KeyEncoding::PKCS8).matches(&key));
        assert!(!spec(KeyAlgorithm::Ed25519, None, KeyEncoding::PKCS8).matches(&key));
    }
}
