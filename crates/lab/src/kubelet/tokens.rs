//! A pod's ServiceAccount tokens and their rotation, as kubelet's token manager keeps them: each is issued for
//! the lifetime its source asks (the default mount's 3607 s, a projected source's `expirationSeconds`) and
//! re-issued once 80 % of that has passed or it is a day old, replaced by a rename so that a reader sees the old
//! token or the new one, whole. In-cluster clients (client-go, kube-rs) re-read the file, so they always hold
//! a token the API accepts.

use super::volumes;
use k8s_openapi::api::core::v1::Pod;
use std::path::{Path, PathBuf};
use weft_apiserver::tokens::{DEFAULT_EXPIRATION, Tokens, api_audiences};
use weft_model::k8s_openapi;

/// The lifetime kubelet asks for the token of the default mount (kube-api-access's `expirationSeconds`).
pub const MOUNT_EXPIRATION: i64 = 3607;
/// A token this old is re-issued whatever its lifetime.
const MAX_AGE: i64 = 24 * 3600;

/// One token file of a pod: where, and what it was asked with.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenFile {
    pub path: PathBuf,
    /// None: the API's audience.
    pub audience: Option<String>,
    pub seconds: i64,
}

/// The token files of a pod whose dir is `pod_dir`: the default mount's (when it was written) and one per
/// projected `serviceAccountToken` source.
pub fn files(pod: &Pod, pod_dir: &Path, account_dir: &Path) -> Vec<TokenFile> {
    let mut files = Vec::new();
    let mounted = account_dir.join("token");
    if mounted.is_file() {
        files.push(TokenFile {
            path: mounted,
            audience: None,
            seconds: MOUNT_EXPIRATION,
        });
    }
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let sources = volume.projected.iter().flat_map(|p| p.sources.iter().flatten());
        for token in sources.filter_map(|s| s.service_account_token.as_ref()) {
            let Ok(relative) = volumes::relative(&token.path) else {
                continue;
            };
            files.push(TokenFile {
                path: pod_dir.join(volumes::DIR).join(&volume.name).join(relative),
                audience: token.audience.clone(),
                seconds: token.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION),
            });
        }
    }
    files
}

/// Whether a token issued at `iat` and expiring at `exp` is to be re-issued at `now` (kubelet's
/// `requiresRefresh`: 80 % of its life gone, or older than a day).
pub fn due(iat: i64, exp: i64, now: i64) -> bool {
    let life = exp - iat;
    now >= iat + life * 8 / 10 || now - iat > MAX_AGE
}

/// Re-issues every token of `files` that is due at `now` (or unreadable, or no longer valid) with `issue`;
/// returns the files rewritten.
pub fn rotate(files: &[TokenFile], tokens: &Tokens, now: i64, issue: &volumes::Issue) -> Result<Vec<PathBuf>, String> {
    let mut rewritten = Vec::new();
    for file in files {
        let audiences = file.audience.clone().map_or_else(api_audiences, |a| vec![a]);
        let current = std::fs::read_to_string(&file.path).unwrap_or_default();
        let fresh = tokens
            .verify(current.trim(), &audiences, now)
            .is_ok_and(|claims| !due(claims.iat, claims.exp, now));
        if fresh {
            continue;
        }
        let token = issue(file.audience.as_deref(), Some(file.seconds))?;
        replace(&file.path, token.as_bytes()).map_err(|e| format!("writing {}: {e}", file.path.display()))?;
        rewritten.push(file.path.clone());
    }
    Ok(rewritten)
}

/// Writes `bytes` over `path` by a rename from a hidden file beside it.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.new"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_apiserver::tokens::{Claims, Ref};

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "a", "uid": "pod-1"},
            "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "vault", "projected": {"sources": [
                {"serviceAccountToken": {"path": "t/token", "audience": "vault", "expirationSeconds": 600}}]}}]}
        }))
        .unwrap()
    }

    #[test]
    fn tokens_are_renewed_after_four_fifths_of_their_life_or_a_day() {
        assert!(!due(1000, 1600, 1479));
        assert!(due(1000, 1600, 1480));
        assert!(due(1000, 1600, 1700));
        assert!(!due(0, 3 * MAX_AGE, MAX_AGE));
        assert!(due(0, 3 * MAX_AGE, MAX_AGE + 1));
    }

    #[test]
    fn token_files_are_reissued_in_place_when_due() {
        let dir = std::env::temp_dir().join(format!("weft-tokens-{}", crate::store::new_uid()));
        let account = dir.join("serviceaccount");
        std::fs::create_dir_all(&dir).unwrap();
        let key = weft_apiserver::pki::service_account_key(&dir).unwrap();
        let tokens = Tokens::new(&key).unwrap();
        // Issued with a clock we choose; the issuer below stands for the kubelet's.
        let issued = std::cell::Cell::new(0);
        let issue = |audience: Option<&str>, seconds: Option<i64>| {
            let sa = Ref {
                name: "default".into(),
                uid: "sa-1".into(),
            };
            let audiences = audience.map_or_else(api_audiences, |a| vec![a.to_string()]);
            let claims = Claims::new("a", sa, None, audiences, issued.get(), seconds.unwrap_or_default());
            tokens.issue(&claims).map_err(|e| e.to_string())
        };

        // The default mount's file is rotated only when it was written; the projected source's always is.
        let files = files(&pod(), &dir, &account);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, dir.join("volumes/vault/t/token"));
        assert_eq!((files[0].audience.as_deref(), files[0].seconds), (Some("vault"), 600));
        std::fs::create_dir_all(&account).unwrap();
        std::fs::create_dir_all(dir.join("volumes/vault/t")).unwrap();
        std::fs::write(account.join("token"), "").unwrap();
        let files = super::files(&pod(), &dir, &account);
        assert_eq!(files[0].seconds, MOUNT_EXPIRATION);

        // Missing or unreadable tokens are written; fresh ones are kept; due ones are replaced.
        issued.set(10_000);
        assert_eq!(rotate(&files, &tokens, 10_000, &issue).unwrap().len(), 2);
        let first = std::fs::read_to_string(&files[1].path).unwrap();
        let claims = tokens.verify(&first, &["vault".into()], 10_000).unwrap();
        assert_eq!(claims.exp - claims.iat, 600);
        assert!(rotate(&files, &tokens, 10_479, &issue).unwrap().is_empty());
        issued.set(10_480);
        assert_eq!(
            rotate(&files, &tokens, 10_480, &issue).unwrap(),
            [files[1].path.clone()]
        );
        let second = std::fs::read_to_string(&files[1].path).unwrap();
        assert_ne!(first, second);
        assert_eq!(tokens.verify(&second, &["vault".into()], 10_480).unwrap().iat, 10_480);
        // The old one is refused once expired, the new one accepted.
        assert_eq!(
            tokens.verify(&first, &["vault".into()], 10_600),
            Err(weft_apiserver::tokens::TokenError::Expired)
        );
        assert!(tokens.verify(&second, &["vault".into()], 10_600).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
