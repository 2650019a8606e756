//! Bound service-account tokens, as kube-apiserver issues them: JWTs (ES256, signed with the lab's `sa.key`)
//! naming the ServiceAccount and, for a pod's token, the pod, with an audience and an expiry. A token
//! authenticates only while its ServiceAccount (and pod) still exist with the uid it was issued for.
//! Tokens live as long as they were asked to (kube-apiserver's `--service-account-extend-token-expiration`, which
//! stretches kubelet's hour to a year, is not copied): the lab's kubelet re-issues pod tokens before they expire.

use crate::auth::UserInfo;
use crate::authz::{service_account_groups, service_account_user};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_model::{Key, Snapshot};

/// The issuer and the API's audience, as kubeadm sets `--service-account-issuer`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// What `kubectl create token` gets without `--duration`, and the shortest kube-apiserver accepts.
pub const DEFAULT_EXPIRATION: i64 = 3600;
pub const MIN_EXPIRATION: i64 = 600;
/// The prefix of the user's extra fields a token adds.
const EXTRA: &str = "authentication.kubernetes.io/";

/// The audiences the API itself accepts.
pub fn api_audiences() -> Vec<String> {
    vec![ISSUER.to_string()]
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the service-account key: {0}")]
    Key(String),
    #[error("malformed token")]
    Malformed,
    #[error("invalid signature")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audiences do not include the API server's")]
    Audience,
    #[error("token is from another issuer")]
    Issuer,
    #[error("{0} no longer exists")]
    Gone(String),
}

/// The claims of a bound token (`kubernetes.io` holds what it is bound to).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Bound,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

impl Claims {
    /// Claims for ServiceAccount `sa` (name, uid) in `namespace`, optionally bound to a pod, valid from `now`
    /// for `seconds`.
    pub fn new(namespace: &str, sa: Ref, pod: Option<Ref>, audiences: Vec<String>, now: i64, seconds: i64) -> Claims {
        Claims {
            iss: ISSUER.to_string(),
            sub: service_account_user(namespace, &sa.name),
            aud: audiences,
            exp: now + seconds,
            iat: now,
            nbf: now,
            jti: crate::names::new_uid(),
            kubernetes: Bound {
                namespace: namespace.to_string(),
                serviceaccount: sa,
                pod,
            },
        }
    }
}

/// Issues and verifies tokens with the lab's key.
pub struct Tokens {
    key: EcdsaKeyPair,
    kid: String,
}

impl Tokens {
    /// From the PKCS#8 DER of an ECDSA P-256 key (`pki::service_account_key`).
    pub fn new(pkcs8: &[u8]) -> Result<Tokens, TokenError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        // The key id: a digest of the public key, as kube-apiserver derives it.
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref()));
        Ok(Tokens { key, kid })
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let body = serde_json::to_vec(claims).map_err(|e| TokenError::Key(e.to_string()))?;
        let signed = format!("{}.{}", B64.encode(header.to_string()), B64.encode(body));
        let signature = self
            .key
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(format!("{signed}.{}", B64.encode(signature.as_ref())))
    }

    /// The claims of a token this key signed, still valid at `now` and meant for one of `audiences`.
    pub fn verify(&self, token: &str, audiences: &[String], now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| B64.decode(part).map_err(|_| TokenError::Malformed);
        let header: serde_json::Value = serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(serde_json::Value::as_str) != Some("ES256") {
            return Err(TokenError::Signature);
        }
        let signed_len = token.len() - signature.len() - 1;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(&token.as_bytes()[..signed_len], &decode(signature)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&decode(body)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer);
        }
        if !claims.aud.iter().any(|a| audiences.contains(a)) {
            return Err(TokenError::Audience);
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        // A minute of leeway for clocks, as kube-apiserver allows.
        if now + 60 < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The user a bearer token names, when it is valid at `now` for one of `audiences` and what it is bound to
    /// still exists in `snap`; with its claims.
    pub fn authenticate(
        &self,
        token: &str,
        audiences: &[String],
        snap: &Snapshot,
        now: i64,
    ) -> Result<(UserInfo, Claims), TokenError> {
        let claims = self.verify(token, audiences, now)?;
        let ns = &claims.kubernetes.namespace;
        let sa = &claims.kubernetes.serviceaccount;
        if claims.sub != service_account_user(ns, &sa.name) {
            return Err(TokenError::Malformed);
        }
        let exists = |kind: &str, r: &Ref| {
            snap.get(&Key::new(kind, Some(ns), &r.name)).is_some_and(|o| {
                o.meta().uid.as_deref() == Some(r.uid.as_str()) && o.meta().deletion_timestamp.is_none()
            })
        };
        if !exists("ServiceAccount", sa) {
            return Err(TokenError::Gone(format!("serviceaccount {ns}/{}", sa.name)));
        }
        if let Some(pod) = &claims.kubernetes.pod
            && !exists("Pod", pod)
        {
            return Err(TokenError::Gone(format!("pod {ns}/{}", pod.name)));
        }
        let mut extra = BTreeMap::new();
        if let Some(pod) = &claims.kubernetes.pod {
            extra.insert(format!("{EXTRA}pod-name"), vec![pod.name.clone()]);
            extra.insert(format!("{EXTRA}pod-uid"), vec![pod.uid.clone()]);
        }
        extra.insert(format!("{EXTRA}credential-id"), vec![format!("JTI={}", claims.jti)]);
        let user = UserInfo {
            name: claims.sub.clone(),
            uid: sa.uid.clone(),
            groups: service_account_groups(ns),
            extra,
        };
        Ok((user, claims))
    }
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens() -> Tokens {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        Tokens::new(pkcs8.as_ref()).unwrap()
    }

    fn snap(pod_uid: &str) -> Snapshot {
        let objects = [
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "namespace": "a", "uid": "sa-1"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a", "uid": pod_uid}}),
        ];
        Snapshot::new(
            1,
            objects
                .into_iter()
                .map(|v| weft_model::manifest::from_value(v).unwrap()),
        )
    }

    fn sa() -> Ref {
        Ref {
            name: "x".into(),
            uid: "sa-1".into(),
        }
    }

    #[test]
    fn tokens_authenticate_their_service_account_until_they_expire() {
        let t = tokens();
        let token = t
            .issue(&Claims::new("a", sa(), None, vec![ISSUER.into()], 1000, 600))
            .unwrap();
        let user = t
            .authenticate(&token, &api_audiences(), &snap("pod-1"), 1100)
            .unwrap()
            .0;
        assert_eq!(user.name, "system:serviceaccount:a:x");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:a",
                "system:authenticated"
            ]
        );
        assert_eq!(
            t.authenticate(&token, &api_audiences(), &snap("pod-1"), 1600)
                .map(|_| ()),
            Err(TokenError::Expired)
        );
        assert_eq!(
            t.authenticate(&token, &api_audiences(), &Snapshot::default(), 1100)
                .unwrap_err(),
            TokenError::Gone("serviceaccount a/x".into())
        );
    }

    #[test]
    fn pod_tokens_die_with_their_pod_and_forgeries_are_refused() {
        let t = tokens();
        let pod = Ref {
            name: "p".into(),
            uid: "pod-1".into(),
        };
        let token = t
            .issue(&Claims::new("a", sa(), Some(pod), vec![ISSUER.into()], 1000, 600))
            .unwrap();
        assert!(t.authenticate(&token, &api_audiences(), &snap("pod-1"), 1000).is_ok());
        // The pod was replaced by another of the same name.
        assert!(matches!(
            t.authenticate(&token, &api_audiences(), &snap("pod-2"), 1000),
            Err(TokenError::Gone(_))
        ));
        assert_eq!(
            tokens().verify(&token, &api_audiences(), 1000),
            Err(TokenError::Signature)
        );
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{sig}",
            B64.encode(br#"{"sub":"system:serviceaccount:a:admin"}"#)
        );
        assert_eq!(t.verify(&forged, &api_audiences(), 1000), Err(TokenError::Signature));
        assert_eq!(t.verify("abc", &api_audiences(), 1000), Err(TokenError::Malformed));
        let other = t
            .issue(&Claims::new("a", sa(), None, vec!["vault".into()], 1000, 600))
            .unwrap();
        assert_eq!(t.verify(&other, &api_audiences(), 1000), Err(TokenError::Audience));
    }
}
