//! What one sync of a `DatabricksToken` leaves behind, success or failure: read by `status`
//! and the next wake-up, produced by `token`.

use super::error::Error;
use crate::schedule::EpochMillis;
use crate::secret::TokenRecord;

/// What a successful sync leaves behind, for status and the next wake-up.
pub struct Synced {
    pub record: TokenRecord,
    pub secret_name: String,
    /// The Secret's resourceVersion as last written or read whole.
    pub secret_version: Option<String>,
    pub rotated_at: Option<EpochMillis>,
    pub next_verification: EpochMillis,
}

/// A sync that failed: the error, what is known of the Secret, and what the sync completed
/// before the failure (a rotation is recorded in status even when a later step fails).
pub struct Failed {
    pub error: Error,
    /// Whether the Secret still serves a working token; None when the sync did not get far
    /// enough to know.
    pub secret_serves: Option<bool>,
    pub partial: Option<Synced>,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed {
            error,
            secret_serves: None,
            partial: None,
        }
    }
}
