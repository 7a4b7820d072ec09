use super::*;
use crate::crd::WorkspaceKind;
use crate::secret::{CurrentToken, PreviousTokenRecord};

fn key(name: &str) -> WorkspaceKey {
    WorkspaceKey {
        kind: WorkspaceKind::DatabricksWorkspace,
        namespace: Some("team".into()),
        name: name.into(),
    }
}

fn own(ws: &str, identity: &str) -> TokenOrigin {
    TokenOrigin {
        workspace: key(ws),
        host: format!("https://{ws}"),
        application_id: None,
        identity: Some(identity.into()),
    }
}

fn obo(ws: &str, app: &str) -> TokenOrigin {
    TokenOrigin {
        workspace: key(ws),
        host: format!("https://{ws}"),
        application_id: Some(app.into()),
        identity: None,
    }
}

fn record(origin: Option<TokenOrigin>) -> TokenRecord {
    TokenRecord {
        current: CurrentToken {
            token_id: "current".into(),
            creation: 0,
            expiry: None,
            value_digest: "d".into(),
            origin,
        },
        previous: vec![PreviousTokenRecord {
            token_id: "previous".into(),
            revoke_after: 10,
            expiry: None,
            origin: None,
        }],
        spec_hash: "h".into(),
        rotate_request_handled: None,
    }
}

/// What, the record, the target, pending already, and what to record first.
type Case = (
    &'static str,
    Option<TokenRecord>,
    TokenOrigin,
    Vec<TokenOrigin>,
    Vec<TokenOrigin>,
);

#[test]
fn a_create_away_from_the_recorded_place_records_both_places_first() {
    let a = own("a", "1");
    let b = own("b", "1");
    let a_obo = obo("a", "sp");
    let cases: Vec<Case> = vec![
        (
            "the usual rotation: nothing to record",
            Some(record(Some(a.clone()))),
            a.clone(),
            vec![],
            vec![],
        ),
        (
            "first create: nothing (see first_create_in_doubt)",
            None,
            a.clone(),
            vec![],
            vec![],
        ),
        (
            "a record from before origins: its place is the current one",
            Some(record(None)),
            b.clone(),
            vec![],
            vec![],
        ),
        (
            "another workspace: the target and the place left",
            Some(record(Some(a.clone()))),
            b.clone(),
            vec![],
            vec![b.clone(), a.clone()],
        ),
        (
            "another owner in the same workspace",
            Some(record(Some(a.clone()))),
            a_obo.clone(),
            vec![],
            vec![a_obo.clone(), a.clone()],
        ),
        (
            "another identity behind the credential",
            Some(record(Some(own("a", "2")))),
            a.clone(),
            vec![],
            vec![a.clone(), own("a", "2")],
        ),
        (
            "already pending: not again",
            Some(record(Some(a.clone()))),
            b.clone(),
            vec![b.clone(), a.clone()],
            vec![],
        ),
        (
            "half pending",
            Some(record(Some(a.clone()))),
            b.clone(),
            vec![a.clone()],
            vec![b.clone()],
        ),
    ];
    for (what, recorded, target, pending, want) in cases {
        assert_eq!(
            to_record_before_create(recorded.as_ref(), &target, &pending),
            want,
            "{what}"
        );
    }
}

#[test]
fn a_place_is_pending_once() {
    let a = own("a", "1");
    let pending = with_place(vec![], a.clone());
    assert_eq!(with_place(pending.clone(), a.clone()), vec![a.clone()]);
    assert_eq!(with_place(pending, own("b", "1")), vec![a, own("b", "1")]);
}

#[test]
fn a_first_create_is_in_doubt_only_after_a_spec_change_with_nothing_recorded() {
    // (finalizer was set, a record exists, generation, observed generation) -> in doubt
    let cases = [
        (
            (false, false, Some(2), None),
            false,
            "first sight: nobody created anything yet",
        ),
        (
            (true, false, Some(1), None),
            false,
            "same spec: the current workspace's list finds it",
        ),
        (
            (true, false, Some(2), None),
            true,
            "spec changed before any status: place unknown",
        ),
        (
            (true, false, Some(3), Some(2)),
            true,
            "spec changed since the last status",
        ),
        (
            (true, false, Some(2), Some(2)),
            false,
            "status written for this spec",
        ),
        (
            (true, true, Some(5), Some(2)),
            false,
            "a record: its place is known",
        ),
    ];
    for ((finalizer, recorded, generation, observed), want, what) in cases {
        assert_eq!(
            first_create_in_doubt(finalizer, recorded, generation, observed),
            want,
            "{what}"
        );
    }
}

#[test]
fn each_place_is_listed_where_its_owner_shows() {
    let cases = [
        (own("a", "1"), "1", vec![Listing::Own]),
        (own("a", "1"), "2", vec![Listing::CreatedBy("1".into())]),
        (obo("a", "sp"), "1", vec![Listing::CreatedBy("1".into())]),
        (
            any_owner_at(key("a"), "https://a".into()),
            "1",
            vec![Listing::Own, Listing::CreatedBy("1".into())],
        ),
    ];
    for (place, me, want) in cases {
        assert_eq!(listings(&place, me), want, "{place:?} as {me}");
    }
}

#[test]
fn only_unrecorded_tokens_tagged_for_the_resource_are_swept() {
    let info = |id: &str, comment: &str| -> TokenInfo {
        serde_json::from_value(serde_json::json!({"token_id": id, "comment": comment})).unwrap()
    };
    let live = vec![
        info("current", "[dbtoken.dev/uid=u1]"),
        info("previous", "[dbtoken.dev/uid=u1]"),
        info("left", "[dbtoken.dev/uid=u1] nightly"),
        info("other", "[dbtoken.dev/uid=u2]"),
        info("bootstrap", "bootstrap"),
    ];
    let ids = |found: Vec<&TokenInfo>| -> Vec<String> {
        found.into_iter().map(|t| t.token_id.clone()).collect()
    };
    let r = record(None);
    assert_eq!(ids(unrecorded("u1", Some(&r), &live)), vec!["left"]);
    // Deleting: nothing is kept.
    assert_eq!(
        ids(unrecorded("u1", None, &live)),
        vec!["current", "previous", "left"]
    );
}
