//! The ACME account: registered with a new key (whose PEM the caller keeps, as cert-manager keeps it in the
//! Issuer's `privateKeySecretRef` Secret), or found again from that key.

use crate::error::{Error, Result};
use crate::transport::{self, Trust};
use instant_acme::{ExternalAccountKey, NewAccount};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use std::time::Duration;

/// Where the ACME server is and how to reach it.
#[derive(Debug, Clone)]
pub struct Server {
    /// The directory URL (`spec.acme.server`).
    pub directory: String,
    pub trust: Trust,
    /// The deadline of one request ([`transport::REQUEST_TIMEOUT`] unless a test wants it shorter).
    pub timeout: Duration,
}

impl Server {
    pub fn new(directory: impl Into<String>, trust: Trust) -> Self {
        Server {
            directory: directory.into(),
            trust,
            timeout: transport::REQUEST_TIMEOUT,
        }
    }
}

/// External account binding (RFC 8555 §7.3.4, `spec.acme.externalAccountBinding`): the key ID and the HMAC key the
/// CA gave out. cert-manager keeps the key base64url-encoded in a Secret; this is its decoded value.
#[derive(Debug, Clone)]
pub struct Binding {
    pub key_id: String,
    pub hmac_key: Vec<u8>,
}

/// What to register an account with.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// `spec.acme.email`, registered as a `mailto:` contact.
    pub email: Option<String>,
    pub binding: Option<Binding>,
}

/// A registered ACME account, ready to order.
#[derive(Clone)]
pub struct Account {
    pub(crate) inner: instant_acme::Account,
    /// The account URL (cert-manager's `status.acme.uri`).
    pub uri: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("uri", &self.uri).finish()
    }
}

/// The account key as PEM (PKCS#8 "PRIVATE KEY"), for the Secret's `tls.key`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountKey(pub String);

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey(..)")
    }
}

impl AccountKey {
    /// instant-acme hands the new key out as PKCS#8 DER.
    fn from_der(der: &PrivatePkcs8KeyDer<'_>) -> Self {
        let pem = pem::Pem::new("PRIVATE KEY", der.secret_pkcs8_der().to_vec());
        // LF line ends, as the rest of a Secret's PEM (pem's default is CRLF).
        AccountKey(pem::encode_config(
            &pem,
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    }

    fn der(&self) -> Result<PrivatePkcs8KeyDer<'static>> {
        PrivatePkcs8KeyDer::from_pem_slice(self.0.as_bytes()).map_err(|e| Error::InvalidConfig {
            what: "account key",
            detail: format!("not a PKCS#8 PEM private key: {e}"),
        })
    }
}

/// Registers a new account with a new ECDSA P-256 key (what instant-acme supports), agreeing to the terms of
/// service as cert-manager does. Returns the account and its key, which the caller stores.
pub async fn register(server: &Server, registration: &Registration) -> Result<(Account, AccountKey)> {
    let contact = registration
        .email
        .iter()
        .map(|e| format!("mailto:{e}"))
        .collect::<Vec<_>>();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let binding = registration
        .binding
        .as_ref()
        .map(|b| ExternalAccountKey::new(b.key_id.clone(), &b.hmac_key));
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (inner, credentials) =
        instant_acme::Account::builder_with_http(transport::client(&server.trust, server.timeout)?)
            .create(&new, server.directory.clone(), binding.as_ref())
            .await?;
    Ok((account(inner), AccountKey::from_der(credentials.private_key())))
}

/// The account of a stored key. The server finds the account the key registered; with `create`, it registers
/// one for the key when there is none (without external account binding: instant-acme binds only new keys).
/// The contact is brought up to date with `email`.
pub async fn load(server: &Server, key: &AccountKey, email: Option<&str>, create: bool) -> Result<Account> {
    let der = key.der()?;
    let signing = instant_acme::Key::from_pkcs8_der(der.clone_key())?;
    let builder = instant_acme::Account::builder_with_http(transport::client(&server.trust, server.timeout)?);
    let pair = (signing, der.into());
    let (inner, _) = match create {
        true => builder.create_from_key(pair, server.directory.clone()).await?,
        false => builder.from_key(pair, server.directory.clone()).await?,
    };
    if let Some(email) = email {
        inner.update_contacts(&[&format!("mailto:{email}")]).await?;
    }
    Ok(account(inner))
}

fn account(inner: instant_acme::Account) -> Account {
    Account {
        uri: inner.id().to_string(),
        inner,
    }
}
