//! The annotation and label names cert-manager uses, on Secrets, CertificateRequests and Ingresses.

pub const CERTIFICATE_NAME: &str = "cert-manager.io/certificate-name";
pub const CERTIFICATE_REVISION: &str = "cert-manager.io/certificate-revision";
pub const PRIVATE_KEY_SECRET_NAME: &str = "cert-manager.io/private-key-secret-name";
pub const ISSUER_NAME: &str = "cert-manager.io/issuer-name";
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
pub const COMMON_NAME: &str = "cert-manager.io/common-name";
pub const ALT_NAMES: &str = "cert-manager.io/alt-names";
pub const IP_SANS: &str = "cert-manager.io/ip-sans";
pub const URI_SANS: &str = "cert-manager.io/uri-sans";
pub const EMAIL_SANS: &str = "cert-manager.io/email-sans";
/// The label on the Secrets the controller writes ("for the attention of").
pub const FAO: &str = "controller.cert-manager.io/fao";
/// The label of a key waiting for its certificate.
pub const NEXT_PRIVATE_KEY: &str = "cert-manager.io/next-private-key";

/// ingress-shim: the Ingress annotations that pick an issuer.
pub const INGRESS_ISSUER: &str = "cert-manager.io/issuer";
pub const INGRESS_CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
pub const INGRESS_ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
pub const INGRESS_ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
pub const TLS_ACME: &str = "kubernetes.io/tls-acme";
/// ingress-shim: the Ingress annotations for the ACME HTTP-01 solver.
pub const HTTP01_EDIT_IN_PLACE: &str = "acme.cert-manager.io/http01-edit-in-place";
pub const HTTP01_INGRESS_CLASS: &str = "acme.cert-manager.io/http01-ingress-class";
pub const HTTP01_INGRESS_CLASS_NAME: &str = "acme.cert-manager.io/http01-ingress-ingressclassname";
/// On Certificates, CertificateRequests and Orders: what the ACME solver does instead of its own Ingress settings.
pub const HTTP01_OVERRIDE_INGRESS_NAME: &str = "acme.cert-manager.io/http01-override-ingress-name";
pub const HTTP01_OVERRIDE_INGRESS_CLASS: &str = "acme.cert-manager.io/http01-override-ingress-class";
pub const HTTP01_OVERRIDE_INGRESS_CLASS_NAME: &str = "acme.cert-manager.io/http01-override-ingress-ingressclassname";
/// The prefix of those three, copied from a Certificate to its requests and their Orders.
pub const HTTP01_OVERRIDE_PREFIX: &str = "acme.cert-manager.io/http01-override-";
