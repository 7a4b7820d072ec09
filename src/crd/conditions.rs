//! Status conditions in the shape `kubectl` and other tools expect (`metav1.Condition`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One condition. `lastTransitionTime` only moves when `status` changes, so re-asserting the
/// same condition writes nothing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Ready, Rotating or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// A CamelCase reason, e.g. `TokenMinted` or the Databricks error code.
    pub reason: String,
    /// A human readable explanation. Never contains a token value.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time at which `status` last changed.
    pub last_transition_time: String,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        now: &str,
        generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: now.to_string(),
            observed_generation: generation,
        }
    }
}

/// Replace or add `new` in `conditions`, keeping the old transition time when the status is unchanged.
pub fn upsert(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of this type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![Condition::new(
            "Ready",
            ConditionStatus::True,
            "A",
            "",
            "t1",
            None,
        )];
        upsert(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::True, "B", "m", "t2", None),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, "t1");
        assert_eq!(conditions[0].reason, "B");
    }

    #[test]
    fn upsert_moves_transition_time_when_status_changes() {
        let mut conditions = vec![Condition::new(
            "Ready",
            ConditionStatus::True,
            "A",
            "",
            "t1",
            None,
        )];
        upsert(
            &mut conditions,
            Condition::new("Ready", ConditionStatus::False, "B", "", "t2", None),
        );
        assert_eq!(conditions[0].last_transition_time, "t2");
    }

    #[test]
    fn upsert_appends_new_types() {
        let mut conditions = vec![];
        upsert(
            &mut conditions,
            Condition::new("Degraded", ConditionStatus::True, "X", "", "t", None),
        );
        assert_eq!(
            find(&conditions, "Degraded").map(|c| c.status),
            Some(ConditionStatus::True)
        );
    }
}
