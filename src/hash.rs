//! Hashes: a stable 64-bit seed for jitter and change detection, and the digest of a token
//! value recorded in place of the value.

use sha2::{Digest, Sha256};

/// A stable 64-bit seed from a string (FNV-1a), for jitter that survives restarts.
pub fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Digest of a token value, as stored in the `dbtoken.dev/token-sha256` annotation.
pub fn value_digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}
