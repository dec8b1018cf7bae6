//! Which scopes may be granted at all (SMART App Launch 2.2 §3,
//! <https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>): the one rule that
//! client registration, the authorization request, the consent step (asked or remembered) and
//! the token endpoint (code exchange, refresh, `client_credentials`) share.
//!
//! - A granular scope (`patient/Observation.rs?category=laboratory`) is held only when the
//!   resource server can enforce its query ([`crate::fhir::access::enforceable`]). Fail closed:
//!   a constraint the server cannot apply would otherwise be dropped and grant *more* than the
//!   scope says, so asking for one is `invalid_scope` and a stored one grants nothing.
//!   Scopes without a query are not affected (an unknown resource type simply finds nothing).
//! - `system/` scopes belong to backend services (`client_credentials`, no user). A client a
//!   user authorizes never holds one: registering it is refused, and an old registration or
//!   grant that has one loses it.

use crate::clients::Client;
use crate::fhir::access::enforceable;
use smart_protocol::scopes::{ResourceScope, Scope, ScopeContext, ScopeSet};
use smart_protocol::{OAuthError, OAuthErrorCode};

/// Who would hold the scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// An app a user authorizes (authorization code, refresh).
    Interactive,
    /// A backend service (`client_credentials`).
    Backend,
}

/// Whether a resource scope carries a query constraint the server cannot enforce.
pub fn unenforceable(scope: &ResourceScope) -> bool {
    !scope.query.is_empty() && !enforceable(scope)
}

/// Why `holder` may not hold `scope`, if it may not.
fn refusal(scope: &Scope, holder: Holder) -> Option<String> {
    let Scope::Resource(r) = scope else {
        return (holder == Holder::Backend).then(|| format!("a backend service holds system/ scopes only, not {scope}"));
    };
    if unenforceable(r) {
        return Some(format!("the constraint of {r} cannot be enforced by this server"));
    }
    match (holder, r.context) {
        (Holder::Interactive, ScopeContext::System) => Some(format!("{r}: system/ scopes are for backend services only")),
        (Holder::Backend, ScopeContext::Patient | ScopeContext::User) => Some(format!("a backend service holds system/ scopes only, not {r}")),
        _ => None,
    }
}

/// Whether `holder` may hold `scope`.
pub fn holdable(scope: &Scope, holder: Holder) -> bool {
    refusal(scope, holder).is_none()
}

/// `set` without what `holder` may not hold (stored registrations and grants written before a
/// rule existed lose the scope instead of keeping it).
pub fn holdable_only(set: &ScopeSet, holder: Holder) -> ScopeSet {
    set.iter().filter(|s| holdable(s, holder)).cloned().collect()
}

/// Checks the scopes a client asks for: an unenforceable granular scope is `invalid_scope`
/// whoever asks (granting it without its constraint would grant more than it says). A scope
/// the holder may not hold is only dropped, the request may still get the rest (RFC 6749
/// §3.3 lets the server grant less than asked, and says so in the response's `scope`): an
/// interactive client's `system/` scope, a backend service's `launch/patient` or `patient/`
/// scope (Python's fhirclient always asks for `launch/patient` next to its system scopes).
pub fn check_requested(requested: &ScopeSet) -> Result<(), OAuthError> {
    for scope in requested.iter() {
        if let Scope::Resource(r) = scope {
            if unenforceable(r) {
                return Err(OAuthError::new(OAuthErrorCode::InvalidScope, format!("the constraint of {r} cannot be enforced by this server")));
            }
        }
    }
    Ok(())
}

/// What may be granted: each requested scope narrowed by the allowed ones, then only what
/// `holder` may hold (narrowing merges constraints, and `patient/*.rs?category=laboratory`
/// narrowed to `Patient` is a constraint the server cannot enforce there).
pub fn grantable(requested: &ScopeSet, allowed: &ScopeSet, holder: Holder) -> ScopeSet {
    holdable_only(&requested.intersect(allowed), holder)
}

/// Checks a registration's `scope`: every scope must be holdable by the client's kind.
pub fn check_registration(scopes: &ScopeSet, holder: Holder) -> Result<(), String> {
    scopes.iter().find_map(|s| refusal(s, holder)).map_or(Ok(()), Err)
}

/// The scopes of a refreshed token: the grant's, or a subset the client asks for
/// (RFC 6749 §6), never one the server cannot enforce .
pub fn refresh_scope(granted: &str, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
    let granted = holdable_only(&ScopeSet::parse(granted).unwrap_or_default(), Holder::Interactive);
    let Some(requested) = requested else { return Ok(granted) };
    let requested = ScopeSet::parse(requested).map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e.to_string()))?;
    check_requested(&requested)?;
    if !granted.covers_all(&requested) {
        return Err(OAuthError::new(OAuthErrorCode::InvalidScope, "scope may only narrow the original grant"));
    }
    Ok(requested)
}

/// The scopes of a `client_credentials` token: what the client asks for (everything it may
/// hold when it asks for nothing) narrowed by its registration; `system/` scopes only, others
/// dropped; `invalid_scope` when nothing allowed remains.
pub fn backend_scope(client: &Client, requested: Option<&str>) -> Result<ScopeSet, OAuthError> {
    let allowed = client.allowed_scopes();
    let requested = match requested {
        Some(r) => ScopeSet::parse(r).map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e.to_string()))?,
        None => allowed.clone(),
    };
    check_requested(&requested)?;
    let granted = grantable(&requested, &allowed, Holder::Backend);
    if granted.is_empty() {
        return Err(OAuthError::new(OAuthErrorCode::InvalidScope, "none of the requested scopes is allowed for this client"));
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn unenforceable_granular_scopes_are_refused_and_never_granted() {
        let lab = "patient/Observation.rs?category=laboratory";
        assert!(check_requested(&set(lab)).is_ok());
        for bad in [
            "patient/Observation.rs?category=laboratory&foo=bar",
            "patient/Observation.rs?_count=5",
            "patient/Observation.rs?code:text=x",
            "patient/*.rs?foo=bar",
        ] {
            let err = check_requested(&set(&format!("openid {bad}"))).unwrap_err();
            assert_eq!(err.error, OAuthErrorCode::InvalidScope, "{bad}");
            assert!(grantable(&set(bad), &set(lab), Holder::Interactive).is_empty(), "{bad}");
            assert!(check_registration(&set(bad), Holder::Interactive).is_err(), "{bad}");
        }
        // A scope without a query is never refused for its type.
        assert!(check_requested(&set("patient/Spaceship.rs")).is_ok());
        // Narrowing can make a constraint land on a type that cannot enforce it.
        assert!(grantable(&set("patient/*.rs?category=laboratory"), &set("patient/Patient.rs"), Holder::Interactive).is_empty());
        assert_eq!(grantable(&set(lab), &set("patient/*.rs"), Holder::Interactive).to_string(), lab);
    }

    #[test]
    fn system_scopes_belong_to_backend_services_only() {
        assert!(check_registration(&set("openid system/*.rs"), Holder::Interactive).is_err());
        assert!(check_registration(&set("system/*.rs"), Holder::Backend).is_ok());
        assert!(check_registration(&set("patient/*.rs"), Holder::Backend).is_err());
        assert!(check_registration(&set("openid"), Holder::Backend).is_err());
        // At authorize a system/ scope is dropped, not fatal; for a backend, anything else is dropped.
        assert!(check_requested(&set("openid system/*.rs")).is_ok());
        assert_eq!(grantable(&set("openid system/*.rs"), &set("openid system/*.rs"), Holder::Interactive).to_string(), "openid");
        assert!(check_requested(&set("launch/patient patient/*.rs openid system/*.rs")).is_ok());
        assert_eq!(grantable(&set("launch/patient patient/*.rs system/*.rs"), &set("system/*.rs patient/*.rs"), Holder::Backend).to_string(), "system/*.rs");
        let unenforceable = set("system/Observation.rs?category=laboratory&foo=bar");
        assert_eq!(check_requested(&unenforceable).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(holdable_only(&set("openid system/*.rs patient/*.rs"), Holder::Interactive).to_string(), "openid patient/*.rs");
    }

    #[test]
    fn backend_scopes_are_system_scopes_narrowed_by_the_registration() {
        let client = crate::clients::ClientRegistration::parse(
            r#"{"client_id":"b","client_name":"B","client_type":"backend","scope":"system/Patient.rs system/Observation.rs","jwks_uri":"https://b.example/jwks"}"#,
        )
        .unwrap()
        .into_client()
        .unwrap();
        assert_eq!(backend_scope(&client, None).unwrap().to_string(), "system/Patient.rs system/Observation.rs");
        assert_eq!(backend_scope(&client, Some("system/*.rs")).unwrap().to_string(), "system/Patient.rs system/Observation.rs");
        assert_eq!(backend_scope(&client, Some("system/Observation.r")).unwrap().to_string(), "system/Observation.r");
        assert_eq!(backend_scope(&client, Some("system/Condition.rs")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(backend_scope(&client, Some("patient/*.rs")).unwrap_err().error, OAuthErrorCode::InvalidScope, "nothing allowed remains");
        assert_eq!(backend_scope(&client, Some("openid")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        // What Python's fhirclient asks for: the allowed subset, said in the response's scope.
        assert_eq!(backend_scope(&client, Some("launch/patient system/*.rs")).unwrap().to_string(), "system/Patient.rs system/Observation.rs");
        assert_eq!(backend_scope(&client, Some("openid fhirUser patient/*.rs system/Observation.rs")).unwrap().to_string(), "system/Observation.rs");
        assert_eq!(backend_scope(&client, Some("system/Observation.rs?category=laboratory&foo=bar")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(backend_scope(&client, Some("system/Observation.rs?category=laboratory")).unwrap().to_string(), "system/Observation.rs?category=laboratory");
    }

    #[test]
    fn refresh_scope_may_only_narrow() {
        assert_eq!(refresh_scope("openid patient/*.rs", None).unwrap().to_string(), "openid patient/*.rs");
        assert_eq!(refresh_scope("openid patient/*.rs", Some("patient/Observation.rs")).unwrap().to_string(), "patient/Observation.rs");
        assert_eq!(refresh_scope("openid patient/*.rs", Some("patient/*.cruds")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        assert_eq!(refresh_scope("openid", Some("bad\\\\scope")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        let lab = "openid patient/Observation.rs?category=laboratory";
        assert_eq!(refresh_scope(lab, Some("patient/Observation.rs?category=laboratory&foo=bar")).unwrap_err().error, OAuthErrorCode::InvalidScope);
        // A grant stored before the rule keeps only what can be enforced.
        assert_eq!(refresh_scope("openid patient/Observation.rs?foo=bar system/*.rs", None).unwrap().to_string(), "openid");
    }
}
