//! The authorization code: issued once the user has done every step of the pending
//! authorization, exchanged once at the token endpoint (the code's hash, its expiry, the
//! client, the redirect URI, PKCE), and a second exchange of it is a replay that revokes what
//! the first one issued.

use super::refresh::{wants_refresh, RefreshState};
use super::{ct_eq, invalid_grant, AuthenticatedUser, GrantError, GrantRecord, PendingAuthorization, Reply, Step};
use crate::launch::LaunchContext;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use smart_protocol::scopes::{Scope, ScopeSet};

/// How long an authorization code is valid (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub const CODE_LIFETIME_SECS: i64 = 60;

/// What the token endpoint needs from a completed authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub user: AuthenticatedUser,
    pub context: LaunchContext,
    pub authorized_at: i64,
    #[serde(default)]
    pub public_client: bool,
}

/// Issues the code of a completed authorization (its browser already checked): only at the
/// last step, and never to a user who may not complete it.
pub(super) fn issue(i: &PendingAuthorization, code_hash: String, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    if i.step() != Step::Complete {
        return Err(GrantError::WrongStep);
    }
    if let Some(refusal) = i.refused() {
        return Err(refusal);
    }
    let grant = completed(i, now).ok_or(GrantError::WrongStep)?;
    let reply = Reply::CodeIssued { redirect_uri: grant.redirect_uri.clone(), state: i.request.state.clone() };
    Ok((GrantRecord::CodeIssued { code_hash, expires_at: now + CODE_LIFETIME_SECS, grant }, reply))
}

/// The grant a completed authorization makes: the user, the granted scopes, and the launch
/// context those scopes let the client see.
fn completed(i: &PendingAuthorization, now: i64) -> Option<AuthorizationGrant> {
    let user = i.user.clone()?;
    let scope = i.granted_scope.clone()?;
    let mut context = i.launch.clone().unwrap_or_default();
    let granted = ScopeSet::parse(&scope).unwrap_or_default();
    if context.patient.is_none() {
        context.patient = i.patient.clone();
        if context.patient.is_some() {
            // A standalone app has no EHR around it to show who the patient is.
            context.need_patient_banner = Some(true);
        }
    }
    if context.encounter.is_none() {
        context.encounter = i.encounter.clone();
    }
    if !granted.contains(&Scope::LaunchPatient) && !granted.contains(&Scope::Launch) {
        context.patient = None;
    }
    if !granted.contains(&Scope::LaunchEncounter) && !granted.contains(&Scope::Launch) {
        context.encounter = None;
    }
    Some(AuthorizationGrant {
        client_id: i.request.client_id.clone(),
        redirect_uri: i.request.redirect_uri.clone(),
        code_challenge: i.request.code_challenge.clone(),
        scope,
        nonce: i.request.nonce.clone(),
        user,
        context,
        authorized_at: now,
        public_client: i.public_client,
    })
}

/// The token endpoint's `authorization_code` grant, as [`super::Command::Exchange`] carries it.
pub(super) struct Presented {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Secret,
    pub refresh_secret: Secret,
    pub refresh_lifetime: i64,
}

/// Exchanges the issued code (`code_hash`, valid until `expires_at`) for tokens: the grant
/// becomes active, with a refresh chain if its scopes ask for one.
pub(super) fn exchange(
    code_hash: String,
    expires_at: i64,
    grant: AuthorizationGrant,
    presented: Presented,
    now: i64,
) -> Result<(GrantRecord, Reply), GrantError> {
    let Presented { code_hash: presented, client_id, redirect_uri, code_verifier, refresh_secret, refresh_lifetime } = presented;
    if !ct_eq(&code_hash, &presented) {
        return Err(invalid_grant("the code is not valid"));
    }
    if now >= expires_at {
        return Err(invalid_grant("the code has expired"));
    }
    if client_id != grant.client_id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return Err(invalid_grant("redirect_uri does not match the authorization request"));
    }
    let verifier = smart_protocol::pkce::CodeVerifier::parse(code_verifier.expose()).map_err(|e| invalid_grant(&e.to_string()))?;
    if !ct_eq(&verifier.s256_challenge(), &grant.code_challenge) {
        return Err(invalid_grant("code_verifier does not match the code_challenge"));
    }
    let refresh = wants_refresh(&grant.scope).then(|| RefreshState::start(&refresh_secret, now + refresh_lifetime, now));
    // A grant stored before a scope rule existed issues only what may be held now.
    let scope = crate::scope_policy::refresh_scope(&grant.scope, None).map(|s| s.to_string()).unwrap_or_default();
    let reply = Reply::Tokens { grant: Box::new(grant.clone()), scope, refresh_token: refresh.as_ref().map(|_| refresh_secret) };
    Ok((GrantRecord::Active { grant, issued_at: now, refresh, code_hash: Some(code_hash) }, reply))
}

/// A code presented to a grant that is already active: the used code again is a replay, so
/// what the first exchange issued is revoked (RFC 6749 §4.1.2, RFC 9700 §4.2.4); any other
/// code is just not valid.
pub(super) fn exchange_again(used_hash: Option<&str>, presented: &str) -> Result<(GrantRecord, Reply), GrantError> {
    if used_hash.is_some_and(|h| ct_eq(h, presented)) {
        Ok((GrantRecord::Closed { reason: "authorization code replayed".into() }, Reply::Revoked))
    } else {
        Err(invalid_grant("the code is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use crate::grants::test_support::*;
    use crate::grants::*;
    use crate::secret::Secret;

    #[test]
    fn a_code_is_issued_once() {
        let (record, _) = apply(None, Command::Start { pending: Box::new(pending("openid", None)) }, 0).unwrap();
        let (record, _) = run(record, Command::Login { browser_hash: b(), csrf: t(), user: user() });
        let (record, _) = run(record, Command::AutoConsent { browser_hash: b() });
        let (record, _) = run(record, Command::IssueCode { browser_hash: b(), code_hash: "h".into() });
        assert_eq!(apply(Some(record), Command::IssueCode { browser_hash: b(), code_hash: "h2".into() }, 11).unwrap_err(), GrantError::NotFound);
    }

    #[test]
    fn the_code_exchange_checks_pkce_redirect_client_and_expiry() {
        let record = with_challenge(issued("openid offline_access"));
        let bad = |command, now| match apply(Some(record.clone()), command, now) {
            Err(GrantError::InvalidGrant { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(bad(exchange(&"x".repeat(43), "https://app.example/cb"), 10).contains("code_verifier"));
        assert!(bad(exchange("short", "https://app.example/cb"), 10).contains("43"));
        assert!(bad(exchange(VERIFIER, "https://app.example/other"), 10).contains("redirect_uri"));
        assert!(bad(exchange(VERIFIER, "https://app.example/cb"), 10 + CODE_LIFETIME_SECS).contains("expired"));
        let Command::Exchange { code_hash, redirect_uri, code_verifier, refresh_secret, refresh_lifetime, .. } = exchange(VERIFIER, "https://app.example/cb")
        else {
            panic!()
        };
        let other_client = Command::Exchange { code_hash, client_id: "other".into(), redirect_uri, code_verifier, refresh_secret, refresh_lifetime };
        assert!(bad(other_client, 10).contains("another client"));
        let wrong_code = Command::Exchange {
            code_hash: "nope".into(),
            client_id: "app".into(),
            redirect_uri: Some("https://app.example/cb".into()),
            code_verifier: VERIFIER.into(),
            refresh_secret: "r".into(),
            refresh_lifetime: 1,
        };
        assert!(bad(wrong_code, 10).contains("not valid"));

        let (active, reply) = apply(Some(record), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let Reply::Tokens { refresh_token, grant, .. } = reply else { panic!() };
        assert_eq!(refresh_token.as_ref().map(Secret::expose), Some("r1"));
        assert_eq!(grant.scope, "openid offline_access");
        // The replay revokes the grant.
        let (revoked, reply) = apply(Some(active), exchange(VERIFIER, "https://app.example/cb"), 11).unwrap();
        assert_eq!(reply, Reply::Revoked);
        assert_eq!(apply(Some(revoked), Command::Status, 12).unwrap_err(), GrantError::Inactive);
    }

    #[test]
    fn no_refresh_token_without_offline_or_online_access() {
        let (_, reply) = apply(Some(with_challenge(issued("openid patient/*.rs"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        assert!(matches!(reply, Reply::Tokens { refresh_token: None, .. }));
    }
}
