//! Key material: generating keys and ids, hashing, the key format, and
//! constant-time comparison.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every API key starts with this.
pub const KEY_PREFIX: &str = "xr_";

/// Random base62 characters after [`KEY_PREFIX`].
pub const KEY_LEN: usize = 32;

/// Characters of a key kept for display (`xr_` plus the first six random
/// ones): enough to tell keys apart in a list, far too few to guess the rest.
pub(crate) const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 6;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The operating system's random generator failed (it essentially never does).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

/// `n` uniformly random base62 characters from the OS CSPRNG.
///
/// Rejection sampling: bytes ≥ 248 (= 4 × 62) are dropped so that every
/// character is equally likely.
pub(crate) fn random_base62(n: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
        for &b in &buf {
            if b < 248 {
                out.push(char::from(BASE62[usize::from(b % 62)]));
                if out.len() == n {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// A new API key: `xr_` + 32 random base62 characters.
pub(crate) fn generate_key() -> Result<String, RandomError> {
    Ok(format!("{KEY_PREFIX}{}", random_base62(KEY_LEN)?))
}

/// True when `key` has the shape of an API key (`xr_` + 32 base62
/// characters). Anything else cannot be a key, so it is rejected without
/// asking the store.
pub fn is_well_formed_key(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == KEY_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The stored form of a key: lowercase hex SHA-256 of its UTF-8 bytes.
///
/// A fast hash is right here (unlike for passwords): keys carry ~190 random
/// bits, so there is nothing to brute-force.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The part of a key shown in lists.
pub(crate) fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// Compares two secrets in time that depends only on their lengths' hashes,
/// not on where they differ: both sides are hashed first, so even the length
/// of the expected secret does not leak.
pub(crate) fn secrets_equal(a: &str, b: &str) -> bool {
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    a[..].ct_eq(&b[..]).into()
}

/// Constant-time equality of two hex hashes of the same length.
pub(crate) fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_have_the_documented_shape() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let k = generate_key().unwrap();
            assert_eq!(k.len(), 3 + 32, "{k}");
            assert!(k.starts_with("xr_"), "{k}");
            assert!(k[3..].bytes().all(|b| b.is_ascii_alphanumeric()), "{k}");
            assert!(is_well_formed_key(&k), "{k}");
            assert!(seen.insert(k), "duplicate key");
        }
    }

    #[test]
    fn base62_uses_every_character() {
        // 62 characters over 20 000 draws: each is expected ~320 times; a
        // missing one means a broken alphabet mapping, not bad luck.
        let s = random_base62(20_000).unwrap();
        let distinct: HashSet<char> = s.chars().collect();
        assert_eq!(distinct.len(), 62);
    }

    #[test]
    fn malformed_keys_are_recognised() {
        let good = format!("xr_{}", "a".repeat(32));
        assert!(is_well_formed_key(&good));
        for bad in [
            String::new(),
            "xr_".into(),
            format!("xr_{}", "a".repeat(31)),
            format!("xr_{}", "a".repeat(33)),
            format!("xk_{}", "a".repeat(32)),
            format!("xr_{}-", "a".repeat(31)),
            format!("xr_{}é", "a".repeat(30)),
        ] {
            assert!(!is_well_formed_key(&bad), "{bad}");
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        // sha256("abc"), the FIPS 180-2 test vector
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let k = generate_key().unwrap();
        assert_eq!(hash_key(&k), hash_key(&k));
        assert_eq!(hash_key(&k).len(), 64);
        assert_ne!(hash_key(&k), hash_key(&format!("{k}x")));
    }

    #[test]
    fn display_prefix_is_short() {
        let k = "xr_AbCdEfGhIjKlMnOpQrStUvWxYz012345";
        assert_eq!(display_prefix(k), "xr_AbCdEf");
    }

    #[test]
    fn constant_time_comparisons_are_correct() {
        assert!(secrets_equal(
            "admin-token-0123456789",
            "admin-token-0123456789"
        ));
        assert!(!secrets_equal(
            "admin-token-0123456789",
            "admin-token-012345678"
        ));
        assert!(!secrets_equal(
            "admin-token-0123456789",
            "Admin-token-0123456789"
        ));
        assert!(!secrets_equal("", "x"));
        let h = hash_key("xr_a");
        assert!(hashes_equal(&h, &hash_key("xr_a")));
        assert!(!hashes_equal(&h, &hash_key("xr_b")));
        assert!(!hashes_equal(&h, &h[..63]));
    }
}
