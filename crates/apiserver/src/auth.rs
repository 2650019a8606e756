//! Who may do what. Identities come from client certificates (`pki::identity`).

pub use crate::pki::UserInfo;

impl UserInfo {
    /// Members of `system:masters` may do anything, as in every cluster.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == crate::pki::MASTERS_GROUP)
    }
}
