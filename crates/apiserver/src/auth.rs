//! Who is asking, and whether they may.

/// An authenticated identity: a user name and its groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// Members of `system:masters` may do anything, as in every cluster.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// The identity a verified client certificate carries: its common name is the user, each organization a group
/// (as kube-apiserver reads client certificates), and every such user is `system:authenticated`.
pub fn identity(chain: &[rustls::pki_types::CertificateDer<'_>]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo { name, groups })
}
