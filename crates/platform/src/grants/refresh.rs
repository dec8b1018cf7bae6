//! The refresh-token chain of an active grant (RFC 9700 §4.14.2: rotation with reuse
//! detection): which grants get one, each use rotates it, a second tab presenting the
//! previous token within the grace window gets the same new one, and a rotated-out token used
//! after it revokes the grant.

use super::{ct_eq, invalid_grant, AuthorizationGrant, GrantError, GrantRecord, Reply};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::{Scope, ScopeSet};

/// How long a rotated-out refresh token still works (returning the current one), by default;
/// the `refresh_grace_secs` setting changes it.
pub const REFRESH_GRACE_SECS: i64 = 30;

/// Whether a grant with these scopes gets a refresh token: `offline_access` outlives the
/// user's session, `online_access` ends with it (SMART App Launch 2.2 §3.1).
pub fn wants_refresh(scope: &str) -> bool {
    let scopes = ScopeSet::parse(scope).unwrap_or_default();
    scopes.contains(&Scope::OfflineAccess) || scopes.contains(&Scope::OnlineAccess)
}

/// Whether the grant's refresh tokens die with the user's login session.
pub fn bound_to_session(scope: &str) -> bool {
    let scopes = ScopeSet::parse(scope).unwrap_or_default();
    scopes.contains(&Scope::OnlineAccess) && !scopes.contains(&Scope::OfflineAccess)
}

/// The refresh-token chain of an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    pub current_hash: String,
    pub previous_hash: Option<String>,
    pub rotated_at: i64,
    /// The current token in clear, kept only for [`REFRESH_GRACE_SECS`] after a rotation so a
    /// second tab refreshing with the previous token at the same moment gets the same new one
    /// instead of revoking the grant.
    pub grace_secret: Option<Secret>,
    pub expires_at: i64,
    /// End of the grace window of the last rotation (`refresh_grace_secs` when it rotated).
    #[serde(default)]
    pub grace_until: i64,
}

impl RefreshState {
    /// The chain the code exchange starts, with `secret` as its first token.
    pub(super) fn start(secret: &Secret, expires_at: i64, now: i64) -> RefreshState {
        RefreshState {
            current_hash: crate::secret::opaque_hash(secret.expose()),
            previous_hash: None,
            rotated_at: now,
            grace_secret: None,
            expires_at,
            grace_until: now,
        }
    }

    pub(super) fn grace_end(&self) -> i64 {
        // Records written before `grace_until` existed had the default window.
        if self.grace_until > 0 {
            self.grace_until
        } else {
            self.rotated_at + REFRESH_GRACE_SECS
        }
    }

    fn matches(&self, presented_hash: &str) -> (bool, bool) {
        let current = ct_eq(&self.current_hash, presented_hash);
        let previous = self.previous_hash.as_deref().is_some_and(|p| ct_eq(p, presented_hash));
        (current, previous)
    }
}

/// The `refresh_token` grant, as [`super::Command::Refresh`] carries it: the hash of the token
/// presented, the next secret of the chain and the narrower `scope` asked for, if any.
pub(super) struct Presented {
    pub hash: String,
    pub client_id: Option<String>,
    pub next_secret: Secret,
    pub grace_secs: i64,
    pub scope: Option<String>,
}

/// Redeems a refresh token on an active grant (`grant`, `issued_at`, `refresh`, `code_hash` as
/// stored). Every refusal comes before anything rotates.
pub(super) fn redeem(
    grant: AuthorizationGrant,
    issued_at: i64,
    refresh: Option<RefreshState>,
    code_hash: Option<String>,
    presented: Presented,
    now: i64,
) -> Result<(GrantRecord, Reply), GrantError> {
    let closed = |reason: &str| GrantRecord::Closed { reason: reason.to_owned() };
    let Presented { hash: presented_hash, client_id, next_secret, grace_secs, scope } = presented;
    let Some(mut chain) = refresh else { return Err(invalid_grant("the grant has no refresh token")) };
    let (current, previous) = chain.matches(&presented_hash);
    if !current && !previous {
        return Err(invalid_grant("the refresh token is not valid"));
    }
    match client_id.as_deref() {
        Some(id) if id != grant.client_id => return Err(invalid_grant("the refresh token was issued to another client")),
        // Checked before anything rotates: an anonymous request must not rotate a
        // confidential client's token away from it.
        None if !grant.public_client => return Err(GrantError::ClientMustAuthenticate),
        _ => {}
    }
    if now >= chain.expires_at {
        return Ok((closed("refresh token expired"), Reply::Revoked));
    }
    let in_grace = now < chain.grace_end();
    let reissue = match (current, in_grace, chain.grace_secret.clone()) {
        (true, _, _) => None,
        (false, true, Some(current)) => Some(current),
        // A rotated-out token used again after the grace window: someone else holds
        // a copy. Revoke the whole grant.
        _ => return Ok((closed("refresh token reused"), Reply::Revoked)),
    };
    // Before anything rotates: a bad scope must not burn the chain.
    let scope = crate::scope_policy::refresh_scope(&grant.scope, scope.as_deref())
        .map_err(|e| GrantError::InvalidScope { reason: e.error_description.unwrap_or_default() })?
        .to_string();
    let refresh_token = match reissue {
        Some(current) => current,
        None => {
            chain.previous_hash = Some(chain.current_hash.clone());
            chain.current_hash = crate::secret::opaque_hash(next_secret.expose());
            chain.rotated_at = now;
            chain.grace_until = now + grace_secs.max(0);
            chain.grace_secret = Some(next_secret.clone());
            next_secret
        }
    };
    let reply = Reply::Tokens { grant: Box::new(grant.clone()), scope, refresh_token: Some(refresh_token) };
    Ok((GrantRecord::Active { grant, issued_at, refresh: Some(chain), code_hash }, reply))
}

#[cfg(test)]
mod tests {
    use crate::grants::test_support::*;
    use crate::grants::*;

    #[test]
    fn session_binding_follows_online_and_offline_access() {
        assert!(bound_to_session("openid online_access"));
        assert!(!bound_to_session("openid online_access offline_access"));
        assert!(wants_refresh("online_access") && wants_refresh("offline_access") && !wants_refresh("openid"));
    }

    #[test]
    fn refresh_rotates_tolerates_a_concurrent_tab_and_revokes_on_late_reuse() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let refresh = |record: &GrantRecord, presented: &str, next: &str, now| {
            apply(
                Some(record.clone()),
                Command::Refresh {
                    presented_hash: crate::secret::opaque_hash(presented),
                    client_id: None,
                    next_secret: next.into(),
                    grace_secs: REFRESH_GRACE_SECS,
                    scope: None,
                },
                now,
            )
        };
        let (r2, reply) = refresh(&active, "r1", "r2", 100).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: Some(ref t), .. } if t == "r2"));
        // A second tab with r1 inside the grace window gets the same r2.
        let (r2b, reply) = refresh(&r2, "r1", "r3", 100 + REFRESH_GRACE_SECS - 1).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: Some(ref t), .. } if t == "r2"));
        assert_eq!(r2b.next_cleanup(), Some(100 + REFRESH_GRACE_SECS));
        let mut cleaned = r2b.clone();
        cleaned.cleanup(100 + REFRESH_GRACE_SECS);
        assert!(!serde_json::to_string(&cleaned).unwrap().contains("\"r2\""), "the clear copy is dropped after the window");
        // r1 again after the window: reuse, the grant is revoked.
        let (closed, reply) = refresh(&r2, "r1", "r4", 100 + REFRESH_GRACE_SECS).unwrap();
        assert_eq!(reply, Reply::Revoked);
        assert!(matches!(refresh(&closed, "r2", "r5", 200), Err(GrantError::InvalidGrant { .. })));
        // Unknown tokens and other clients are invalid_grant without revoking.
        assert!(matches!(refresh(&r2, "nonsense", "x", 101), Err(GrantError::InvalidGrant { .. })));
        let other = apply(
            Some(r2.clone()),
            Command::Refresh {
                presented_hash: crate::secret::opaque_hash("r2"),
                client_id: Some("other".into()),
                next_secret: "x".into(),
                grace_secs: REFRESH_GRACE_SECS,
                scope: None,
            },
            101,
        );
        assert!(matches!(other, Err(GrantError::InvalidGrant { .. })));
        // A confidential client's grant never refreshes anonymously.
        let mut confidential = r2.clone();
        if let GrantRecord::Active { grant, .. } = &mut confidential {
            grant.public_client = false;
        }
        assert_eq!(refresh(&confidential, "r2", "x", 101).unwrap_err(), GrantError::ClientMustAuthenticate);
        // Expiry of the chain.
        assert_eq!(refresh(&r2, "r2", "x", 10 + 1000).unwrap().1, Reply::Revoked);
    }

    #[test]
    fn a_bad_refresh_scope_is_refused_before_the_chain_rotates() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let err = apply(Some(active.clone()), refresh_cmd("r1", "r2", 30, Some("patient/*.cruds")), 20).unwrap_err();
        assert!(matches!(err, GrantError::InvalidScope { .. }), "{err:?}");
        // Nothing rotated (the error changes nothing): r1 still works, once.
        let (_, reply) = apply(Some(active), refresh_cmd("r1", "r2", 30, Some("openid")), 21).unwrap();
        assert!(matches!(reply, Reply::Tokens { ref scope, refresh_token: Some(ref t), .. } if scope == "openid" && t == "r2"));
    }

    #[test]
    fn a_grace_window_longer_than_the_default_is_kept() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let (mut r2, _) = apply(Some(active), refresh_cmd("r1", "r2", 120, None), 100).unwrap();
        assert_eq!(r2.next_cleanup(), Some(220), "the alarm waits for the configured window");
        r2.cleanup(100 + REFRESH_GRACE_SECS + 1);
        let (_, reply) = apply(Some(r2.clone()), refresh_cmd("r1", "r3", 120, None), 100 + 60).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: Some(ref t), .. } if t == "r2"), "a second tab after 60 s of 120");
        r2.cleanup(220);
        assert_eq!(apply(Some(r2), refresh_cmd("r1", "r3", 120, None), 220).unwrap().1, Reply::Revoked);
    }
}
