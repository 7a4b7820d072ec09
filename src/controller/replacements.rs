//! When each resource minted a replacement for a token taken out of its Secret (deleted or
//! overwritten), for the replacement budget (`plan::next_replacement_at`).

use std::{collections::HashMap, sync::Mutex};

use super::{lock::lock, plan};
use crate::schedule::EpochMillis;

/// Recent replacement mints by resource uid.
#[derive(Default)]
pub struct Replacements {
    times: Mutex<HashMap<String, Vec<EpochMillis>>>,
}

impl Replacements {
    /// Recent replacement mints of a resource.
    pub fn recent(&self, uid: &str) -> Vec<EpochMillis> {
        lock(&self.times).get(uid).cloned().unwrap_or_default()
    }

    pub fn record(&self, uid: &str, now: EpochMillis) {
        let mut map = lock(&self.times);
        let times = map.entry(uid.to_string()).or_default();
        times.retain(|t| now - t < plan::REPLACEMENT_WINDOW);
        times.push(now);
    }

    pub fn forget(&self, uid: &str) {
        lock(&self.times).remove(uid);
    }
}
