//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `<webhook-id>.<webhook-timestamp>.<body>`, with the secret's bytes as the key. During a
//! rotation the secret holds two keys and both sign, so a receiver that knows either verifies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Keys in a secret: whitespace- or comma-separated, newest first, each `whsec_<base64>` (the
/// Standard Webhooks form) or bare base64.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material, not even in a debug log.
        write!(f, "SigningKeys({} key(s))", self.0.len())
    }
}

/// Shortest and longest key accepted, in bytes (Standard Webhooks suggests 24 to 64).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 16..=128;
/// More keys than a rotation needs is a mistake, not a setting.
const MAX_KEYS: usize = 4;

impl SigningKeys {
    pub fn parse(secret: &str) -> Result<Self, String> {
        let keys = secret
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|k| !k.is_empty())
            .map(|k| {
                let encoded = k.strip_prefix("whsec_").unwrap_or(k);
                let key = STANDARD
                    .decode(encoded)
                    .map_err(|_| "a webhook key is not base64 (whsec_<base64>)".to_owned())?;
                if KEY_BYTES.contains(&key.len()) {
                    Ok(key)
                } else {
                    Err(format!(
                        "a webhook key must be {} to {} bytes",
                        KEY_BYTES.start(),
                        KEY_BYTES.end()
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(format!("the webhook secret must hold 1 to {MAX_KEYS} keys"));
        }
        Ok(Self(keys))
    }

    /// A new random key in the `whsec_` form (for `make dev` when none is given).
    pub fn generate() -> String {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        format!("whsec_{}", STANDARD.encode(bytes))
    }

    /// The `webhook-signature` header value: one `v1,<signature>` per key, space-separated.
    pub fn signature_header(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let content = sign_content(id, timestamp, body);
        self.0
            .iter()
            .map(|key| format!("v1,{}", STANDARD.encode(hmac_sha256(key, &content))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What is signed: `id.timestamp.body`.
pub fn sign_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// HMAC (RFC 2104) with SHA-256, on the workspace's one SHA-256 implementation.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_the_rfc_4231_test_vectors() {
        // Test case 2 (short key) and 6 (key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let keys = SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            keys.signature_header("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_a_rotation_every_key_signs_and_bad_secrets_are_refused() {
        let (a, b) = (SigningKeys::generate(), SigningKeys::generate());
        let both = SigningKeys::parse(&format!("{a} {b}")).unwrap();
        let header = both.signature_header("msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            SigningKeys::parse(&a)
                .unwrap()
                .signature_header("msg_1", 1, b"{}")
        );
        assert_eq!(
            parts[1],
            SigningKeys::parse(&b)
                .unwrap()
                .signature_header("msg_1", 1, b"{}")
        );
        for bad in ["", "whsec_", "whsec_!!!!", "whsec_AAAA", "a b c d e"] {
            assert!(SigningKeys::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            !format!("{both:?}").contains(&a[6..]),
            "keys never reach a debug log"
        );
    }
}
