//! `auth-type: basic` with `auth-secret`, `auth-secret-type` and `auth-realm`: HTTP Basic authentication against
//! the htpasswd lines of a Secret (key `auth`, or with `auth-map` one key per user whose value is the hash).
//! Hashes are bcrypt (`$2y$`, `$2a$`, `$2b$`, by the `bcrypt` crate), Apache's `$apr1$` MD5-crypt (`htpasswd`'s
//! default, `crate::apr1`) or `{SHA}` (SHA-1 in base64, by `ring`); other forms (crypt, plain text) are refused,
//! as no maintained crate verifies them. A request without valid credentials gets 401 with
//! `WWW-Authenticate: Basic realm="..."`. bcrypt and apr1 take a thousand or more rounds, so they run off the
//! proxy's threads and a verified user:password is remembered (as a SHA-256 digest) for the next request.

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use k8s_openapi::api::core::v1::Secret;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Verified credentials remembered at most (then forgotten all at once).
const REMEMBERED: usize = 1024;

/// What an Ingress's `auth-*` annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// `auth-secret`: the Secret's name (in the Ingress's namespace; `namespace/name` only for that namespace).
    pub secret: String,
    /// `auth-secret-type: auth-map`: one key per user (else `auth-file`: htpasswd lines under key `auth`).
    pub map: bool,
    /// `auth-realm`.
    pub realm: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Hash {
    Bcrypt(String),
    Apr1(crate::apr1::Apr1),
    Sha1([u8; 20]),
}

impl Hash {
    fn parse(text: &str) -> Option<Hash> {
        let text = text.trim();
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| text.starts_with(p)) {
            return Some(Hash::Bcrypt(text.to_string()));
        }
        if let Some(apr1) = crate::apr1::Apr1::parse(text) {
            return Some(Hash::Apr1(apr1));
        }
        let digest = base64::engine::general_purpose::STANDARD
            .decode(text.strip_prefix("{SHA}")?)
            .ok()?;
        digest.try_into().ok().map(Hash::Sha1)
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Hash::Apr1(hash) => hash.verify(password),
            Hash::Sha1(expected) => {
                let got = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
                got.as_ref().iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
        }
    }
}

/// The users of an auth Secret, and who may pass.
#[derive(Debug)]
pub struct Users {
    users: HashMap<String, Hash>,
    realm: HeaderValue,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Why a Secret's users cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("has no key \"auth\"")]
    NoAuthKey,
    #[error(
        "has no user whose password hash weft can verify (bcrypt, apr1 or {{SHA}}; crypt and plain text are refused)"
    )]
    NoUsers,
}

impl Users {
    /// The users of `secret` as `auth` asks, and the users left out for a hash form weft refuses.
    pub fn from_secret(secret: &Secret, auth: &BasicAuth) -> Result<(Users, Vec<String>), AuthError> {
        let data = secret.data.as_ref();
        let text = |bytes: &k8s_openapi::ByteString| String::from_utf8_lossy(&bytes.0).into_owned();
        let entries: Vec<(String, String)> = if auth.map {
            data.into_iter()
                .flatten()
                .map(|(user, hash)| (user.clone(), text(hash)))
                .collect()
        } else {
            let file = data.and_then(|d| d.get("auth")).ok_or(AuthError::NoAuthKey)?;
            text(file)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(user, hash)| (user.to_string(), hash.to_string()))
                .collect()
        };
        let (mut users, mut refused) = (HashMap::new(), Vec::new());
        for (user, hash) in entries {
            match Hash::parse(&hash) {
                Some(hash) => {
                    users.insert(user, hash);
                }
                None => refused.push(user),
            }
        }
        if users.is_empty() {
            return Err(AuthError::NoUsers);
        }
        let quoted = auth.realm.replace(['"', '\\'], "");
        let realm = HeaderValue::try_from(format!("Basic realm=\"{quoted}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"\""));
        let users = Users {
            users,
            realm,
            verified: Mutex::default(),
        };
        Ok((users, refused))
    }

    /// The WWW-Authenticate value of a 401.
    pub fn challenge(&self) -> HeaderValue {
        self.realm.clone()
    }

    /// Whether the request's Authorization header names a user with the right password.
    pub async fn admits(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let digest: [u8; 32] = {
            let d = ring::digest::digest(&ring::digest::SHA256, format!("{user}:{password}").as_bytes());
            d.as_ref().try_into().unwrap_or_default()
        };
        if self.lock().contains(&digest) {
            return true;
        }
        let ok = match hash {
            Hash::Sha1(_) => hash.verify(&password),
            Hash::Bcrypt(_) | Hash::Apr1(_) => {
                let hash = hash.clone();
                tokio::task::spawn_blocking(move || hash.verify(&password))
                    .await
                    .unwrap_or(false)
            }
        };
        if ok {
            let mut verified = self.lock();
            if verified.len() >= REMEMBERED {
                verified.clear();
            }
            verified.insert(digest);
        }
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The user and password of an `Authorization: Basic` header.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `htpasswd -nbs alice secret` and `htpasswd -nbB -C 4 bob hunter2`.
    const ALICE: &str = "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderMap::from_iter([(
            header::AUTHORIZATION,
            HeaderValue::try_from(format!("Basic {token}")).unwrap(),
        )])
    }

    fn auth(map: bool) -> BasicAuth {
        BasicAuth {
            secret: "s".into(),
            map,
            realm: "Who \"are\" you".into(),
        }
    }

    #[tokio::test]
    async fn htpasswd_lines_with_bcrypt_apr1_and_sha_and_crypt_refused() {
        let bob = bcrypt::hash("hunter2", 4).unwrap();
        let file =
            format!("# users\n{ALICE}\nbob:{bob}\ncarol:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00\nerin:xxj31ZMTZzkVA\n");
        let (users, refused) = Users::from_secret(&secret(&[("auth", &file)]), &auth(false)).unwrap();
        assert_eq!(refused, ["erin"]);
        assert_eq!(users.challenge(), "Basic realm=\"Who are you\"");
        for (user, password, ok) in [
            ("alice", "secret", true),
            ("alice", "wrong", false),
            ("bob", "hunter2", true),
            ("bob", "hunter2", true),
            ("bob", "hunter3", false),
            ("carol", "password", true),
            ("carol", "Password", false),
            ("dave", "secret", false),
        ] {
            assert_eq!(users.admits(&basic(user, password)).await, ok, "{user}:{password}");
        }
        assert!(!users.admits(&HeaderMap::new()).await);
        let bearer = HeaderMap::from_iter([(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"))]);
        assert!(!users.admits(&bearer).await);
    }

    #[tokio::test]
    async fn auth_maps_and_unusable_secrets() {
        let (users, _) =
            Users::from_secret(&secret(&[("alice", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=")]), &auth(true)).unwrap();
        assert!(users.admits(&basic("alice", "secret")).await);
        assert_eq!(
            Users::from_secret(&secret(&[("other", ALICE)]), &auth(false)).unwrap_err(),
            AuthError::NoAuthKey
        );
        assert_eq!(
            Users::from_secret(&secret(&[("auth", "x:plain")]), &auth(false)).unwrap_err(),
            AuthError::NoUsers
        );
    }
}
