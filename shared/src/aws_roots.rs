//! The roots of trust of the SDK clients: the certificate authorities AWS's service endpoints
//! chain to, compiled in, rather than the machine's whole store.
//!
//! Why: loading the platform store (rustls-native-certs) reads and parses every root the
//! machine trusts (Debian: a 220 KB bundle and 292 files in `/etc/ssl/certs`), and the SDK does
//! it once per client at construction, so three clients made it most of a cold start
//! (`cold_init_ratio_*` in `make bench`, docs/benchmarks.md). DynamoDB, SQS, Secrets Manager
//! and S3 (since June 2022) present Amazon Trust Services certificates, whose roots are Amazon
//! Root CA 1 to 4, cross-signed by Starfield Services Root CA G2 for older chains: those five
//! are the store. The SDK clients reach only AWS endpoints (the origin and webhook receivers
//! go through reqwest, with its own roots), so nothing else needs trusting, and a
//! TLS-intercepting middlebox is refused instead of trusted.
//!
//! `SSL_CERT_FILE` or `SSL_CERT_DIR` in the environment switches back to the platform store
//! (read from those paths only), for an endpoint behind a private CA.

use aws_smithy_http_client::tls::TrustStore;

/// The five roots, PEM, as published by Amazon Trust Services (copied from Debian's
/// ca-certificates; the test below holds each to its published SHA-256 fingerprint).
pub const AWS_ROOTS: [(&str, &str); 5] = [
    (
        "Amazon Root CA 1",
        include_str!("../certs/Amazon_Root_CA_1.pem"),
    ),
    (
        "Amazon Root CA 2",
        include_str!("../certs/Amazon_Root_CA_2.pem"),
    ),
    (
        "Amazon Root CA 3",
        include_str!("../certs/Amazon_Root_CA_3.pem"),
    ),
    (
        "Amazon Root CA 4",
        include_str!("../certs/Amazon_Root_CA_4.pem"),
    ),
    (
        "Starfield Services Root Certificate Authority - G2",
        include_str!("../certs/Starfield_Services_Root_Certificate_Authority_-_G2.pem"),
    ),
];

/// Whether the environment asks for the platform's store instead.
pub fn platform_store_requested(var: impl Fn(&str) -> Option<String>) -> bool {
    ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

/// The SDK clients' trust store: AWS's roots, or the platform's when asked for.
pub fn trust_store() -> TrustStore {
    if platform_store_requested(|name| std::env::var(name).ok()) {
        return TrustStore::default();
    }
    AWS_ROOTS
        .iter()
        .fold(TrustStore::empty(), |store, (_, pem)| {
            store.with_pem_certificate(pem.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    /// SHA-256 of each root's DER, as Amazon Trust Services publishes them.
    const PUBLISHED: [&str; 5] = [
        "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
        "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
        "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
        "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
        "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
    ];

    fn der(pem: &str) -> Vec<u8> {
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("the embedded PEM is base64")
    }

    #[test]
    fn each_embedded_root_is_the_one_amazon_trust_services_publishes() {
        for ((name, pem), fingerprint) in AWS_ROOTS.iter().zip(PUBLISHED) {
            assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1, "{name}");
            let digest = Sha256::digest(der(pem));
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, fingerprint, "{name}");
        }
    }

    #[test]
    fn the_platform_store_is_used_only_when_the_environment_names_one() {
        let env = crate::config::tests::lookup;
        assert!(!platform_store_requested(env(&[])));
        assert!(!platform_store_requested(env(&[("SSL_CERT_FILE", "")])));
        assert!(platform_store_requested(env(&[(
            "SSL_CERT_FILE",
            "/etc/pki/tls/certs/ca-bundle.crt"
        )])));
        assert!(platform_store_requested(env(&[(
            "SSL_CERT_DIR",
            "/etc/ssl/certs"
        )])));
    }
}
