//! Tenancy policy: whose tokens a `DatabricksToken` may get through a workspace. Pure
//! decisions over facts `workspace.rs` gathers (the token's namespace and `onBehalfOf`, the
//! workspace's policy fields, whether its credential is a workspace admin).

use crate::crd::{AllowedServicePrincipal, OwnIdentityTokens};

/// The condition reasons of a refusal (defined with the others in `crd::reasons`).
pub use crate::crd::reasons::{
    ADMIN_CHECK_FAILED, OWN_IDENTITY_TOKEN_REFUSED, SERVICE_PRINCIPAL_NOT_ALLOWED,
};

/// What the policy sees of one mint request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub namespace: &'a str,
    /// `spec.onBehalfOf.applicationId`, if set.
    pub on_behalf_of: Option<&'a str>,
    /// The service principal allow-list of a ClusterDatabricksWorkspace; `None` for a
    /// DatabricksWorkspace, whose namespace holds the credential itself.
    pub allowed_service_principals: Option<&'a [AllowedServicePrincipal]>,
    pub own_identity_tokens: OwnIdentityTokens,
    /// Whether the credential is a workspace admin, once known.
    pub credential_is_admin: Option<bool>,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    ServicePrincipalNotAllowed {
        application_id: String,
    },
    /// `ownIdentityTokens: Deny`.
    OwnIdentityDenied,
    /// `ownIdentityTokens: DenyIfAdmin` and the credential is an admin.
    OwnIdentityIsAdmin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Ask Databricks whether the credential is an admin, then decide again.
    NeedsAdminCheck,
    Refused(Refusal),
}

pub fn decide(request: &Request<'_>) -> Verdict {
    if let Some(app_id) = request.on_behalf_of {
        let allowed = request.allowed_service_principals.is_none_or(|list| {
            list.iter().any(|sp| {
                sp.application_id.eq_ignore_ascii_case(app_id)
                    && sp
                        .namespaces
                        .iter()
                        .any(|n| n == "*" || n == request.namespace)
            })
        });
        return if allowed {
            Verdict::Allowed
        } else {
            Verdict::Refused(Refusal::ServicePrincipalNotAllowed {
                application_id: app_id.to_string(),
            })
        };
    }
    match (request.own_identity_tokens, request.credential_is_admin) {
        (OwnIdentityTokens::Allow, _) | (OwnIdentityTokens::DenyIfAdmin, Some(false)) => {
            Verdict::Allowed
        }
        (OwnIdentityTokens::Deny, _) => Verdict::Refused(Refusal::OwnIdentityDenied),
        (OwnIdentityTokens::DenyIfAdmin, Some(true)) => {
            Verdict::Refused(Refusal::OwnIdentityIsAdmin)
        }
        (OwnIdentityTokens::DenyIfAdmin, None) => Verdict::NeedsAdminCheck,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP_A: &str = "11111111-1111-1111-1111-111111111111";
    const SP_B: &str = "22222222-2222-2222-2222-222222222222";

    fn grants() -> Vec<AllowedServicePrincipal> {
        vec![
            AllowedServicePrincipal {
                application_id: SP_A.into(),
                namespaces: vec!["team-a".into()],
            },
            AllowedServicePrincipal {
                application_id: SP_B.to_uppercase(),
                namespaces: vec!["*".into()],
            },
        ]
    }

    fn request<'a>(
        namespace: &'a str,
        on_behalf_of: Option<&'a str>,
        list: Option<&'a [AllowedServicePrincipal]>,
    ) -> Request<'a> {
        Request {
            namespace,
            on_behalf_of,
            allowed_service_principals: list,
            own_identity_tokens: OwnIdentityTokens::DenyIfAdmin,
            credential_is_admin: None,
        }
    }

    #[test]
    fn a_cluster_workspace_mints_only_for_listed_service_principals_of_each_namespace() {
        let list = grants();
        let refused = |app: &str| {
            Verdict::Refused(Refusal::ServicePrincipalNotAllowed {
                application_id: app.into(),
            })
        };
        for (namespace, app, want) in [
            ("team-a", SP_A, Verdict::Allowed),
            ("team-b", SP_A, refused(SP_A)),
            ("team-b", SP_B, Verdict::Allowed),
            ("team-a", SP_B, Verdict::Allowed),
            (
                "team-a",
                "33333333-3333-3333-3333-333333333333",
                refused("33333333-3333-3333-3333-333333333333"),
            ),
        ] {
            assert_eq!(
                decide(&request(namespace, Some(app), Some(&list))),
                want,
                "{namespace} for {app}"
            );
        }
    }

    #[test]
    fn an_empty_allow_list_refuses_every_service_principal() {
        assert!(matches!(
            decide(&request("team-a", Some(SP_A), Some(&[]))),
            Verdict::Refused(Refusal::ServicePrincipalNotAllowed { .. })
        ));
    }

    #[test]
    fn a_namespaced_workspace_mints_for_any_service_principal() {
        assert_eq!(
            decide(&request("team-a", Some(SP_A), None)),
            Verdict::Allowed
        );
    }

    #[test]
    fn own_identity_tokens_follow_the_policy_and_the_admin_check() {
        use OwnIdentityTokens::*;
        for (policy, admin, want) in [
            (DenyIfAdmin, None, Verdict::NeedsAdminCheck),
            (
                DenyIfAdmin,
                Some(true),
                Verdict::Refused(Refusal::OwnIdentityIsAdmin),
            ),
            (DenyIfAdmin, Some(false), Verdict::Allowed),
            (Allow, None, Verdict::Allowed),
            (Allow, Some(true), Verdict::Allowed),
            (Deny, None, Verdict::Refused(Refusal::OwnIdentityDenied)),
            (
                Deny,
                Some(false),
                Verdict::Refused(Refusal::OwnIdentityDenied),
            ),
        ] {
            let mut r = request("team-a", None, None);
            r.own_identity_tokens = policy;
            r.credential_is_admin = admin;
            assert_eq!(decide(&r), want, "{policy:?} admin={admin:?}");
        }
    }

    #[test]
    fn on_behalf_of_tokens_need_no_admin_check_whatever_the_own_identity_policy() {
        let list = grants();
        let mut r = request("team-a", Some(SP_A), Some(&list));
        r.own_identity_tokens = OwnIdentityTokens::Deny;
        assert_eq!(decide(&r), Verdict::Allowed);
    }
}
