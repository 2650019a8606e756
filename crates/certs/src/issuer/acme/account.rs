//! The issuer's ACME account: its key in the `privateKeySecretRef` Secret (generated and stored when missing,
//! unless `disableAccountKeyGeneration`), the server reached with `caBundle`/`skipTLSVerify`, and external
//! account binding from its Secret. Accounts are kept per key Secret and server, so reconciles do not register
//! again.

use crate::api::{ACMEIssuer, SecretKeySelector};
use crate::issuer::Resolved;
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use weft_acme::{Account, AccountKey, Binding, Registration, Server, Trust};
use weft_model::k8s_openapi;

/// The key in the Secret cert-manager keeps the account key under when `key` is not given.
const DEFAULT_KEY: &str = "tls.key";

pub enum Failure {
    Acme(weft_acme::Error),
    Config(String),
    Kube(kube::Error),
}

impl From<weft_acme::Error> for Failure {
    fn from(e: weft_acme::Error) -> Self {
        Failure::Acme(e)
    }
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure::Kube(e)
    }
}

static ACCOUNTS: Mutex<Option<HashMap<String, (AccountKey, Account)>>> = Mutex::new(None);

/// The account of `acme`, registered when its key Secret is missing.
pub async fn ensure(client: &Client, issuer: &Resolved, acme: &ACMEIssuer) -> Result<Account, Failure> {
    let server = server(acme)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &issuer.secrets_namespace);
    let selector = &acme.private_key_secret_ref;
    let cache_key = format!("{}/{}/{}", issuer.secrets_namespace, selector.name, acme.server);
    let stored = secrets.get_opt(&selector.name).await?.and_then(|s| value(&s, selector));
    if let Some(key) = &stored {
        let cached = ACCOUNTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|m| m.get(&cache_key).cloned());
        // The same key as when it was registered (a replaced Secret means another account).
        if let Some((_, account)) = cached.filter(|(k, _)| k == key) {
            return Ok(account);
        }
    }
    let account = match stored {
        Some(key) => {
            let account = weft_acme::load(&server, &key, acme.email.as_deref(), true).await?;
            remember(cache_key, key, account.clone());
            account
        }
        None if acme.disable_account_key_generation == Some(true) => {
            return Err(Failure::Config(format!(
                "Failed to register ACME account: the account key Secret {:?} does not exist and \
                 disableAccountKeyGeneration is set",
                selector.name
            )));
        }
        None => {
            let registration = Registration {
                email: acme.email.clone(),
                binding: binding(client, issuer, acme).await?,
            };
            let (account, key) = weft_acme::register(&server, &registration).await?;
            let name = selector.key.clone().unwrap_or_else(|| DEFAULT_KEY.into());
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(selector.name.clone()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(name, ByteString(key.0.clone().into_bytes()))])),
                ..Default::default()
            };
            secrets.create(&PostParams::default(), &secret).await?;
            remember(cache_key, key, account.clone());
            account
        }
    };
    Ok(account)
}

fn remember(cache_key: String, key: AccountKey, account: Account) {
    ACCOUNTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_default()
        .insert(cache_key, (key, account));
}

/// The server of the spec, trusted as `caBundle`/`skipTLSVerify` say.
pub fn server(acme: &ACMEIssuer) -> Result<Server, Failure> {
    let trust = match (&acme.ca_bundle, acme.skip_tls_verify) {
        (Some(_), Some(true)) => {
            return Err(Failure::Config(
                "caBundle and skipTLSVerify are mutually exclusive".into(),
            ));
        }
        (Some(bundle), _) => Trust::Bundle(
            base64::engine::general_purpose::STANDARD
                .decode(bundle.trim())
                .map_err(|e| Failure::Config(format!("caBundle is not base64: {e}")))?,
        ),
        (None, Some(true)) => Trust::Insecure,
        (None, _) => Trust::System,
    };
    Ok(Server::new(acme.server.clone(), trust))
}

/// External account binding: the key ID and the HMAC key from its Secret (base64url, as CAs hand it out).
async fn binding(client: &Client, issuer: &Resolved, acme: &ACMEIssuer) -> Result<Option<Binding>, Failure> {
    let Some(eab) = &acme.external_account_binding else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &issuer.secrets_namespace);
    let selector = &eab.key_secret_ref;
    let missing = || {
        Failure::Config(format!(
            "external account binding: Secret {:?} has no key",
            selector.name
        ))
    };
    let secret = secrets.get_opt(&selector.name).await?.ok_or_else(missing)?;
    let encoded = value(&secret, selector).ok_or_else(missing)?;
    let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.0.trim().trim_end_matches('='))
        .map_err(|e| Failure::Config(format!("external account binding key is not base64url: {e}")))?;
    Ok(Some(Binding {
        key_id: eab.key_id.clone(),
        hmac_key,
    }))
}

/// The selected key of a Secret, as text.
fn value(secret: &Secret, selector: &SecretKeySelector) -> Option<AccountKey> {
    let key = selector.key.as_deref().unwrap_or(DEFAULT_KEY);
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(AccountKey)
}
