//! Introspection (RFC 7662 + SMART) and revocation (RFC 7009): who may call, and what a
//! presented token is. Both read the grant's own object, never a cache.
//!
//! The calling client is checked in order: a form → single, short parameters → its
//! credentials are readable → it authenticates at all → it authenticates (a secret or
//! `private_key_jwt`, whose assertion may name this endpoint) → it may use the endpoint → a
//! `token` is given. Every refusal of the client's credentials carries a challenge.
//!
//! Who may introspect or revoke a token (RFC 7662 §2.1 and §4, RFC 7009 §2.1).
//!
//! Introspection tells a token's scopes, user and patient, so it is not for any client that
//! happens to have credentials: the caller must authenticate (a secret or `private_key_jwt`;
//! public clients cannot), and a token is described only to the client it was issued to or to
//! a client registered as a resource server (`resource_server: true`). Everyone else hears
//! `active: false`, exactly as for an unknown token, so introspection reveals nothing about
//! other clients' tokens. Revocation accepts public clients (they name themselves), and a
//! token is revoked only for the client it was issued to.

use super::issue::{fhir_user_url, gives_fhir_user};
use super::request::{self, ClientAuth};
use super::{client_auth, ClientChallenge, Failure, FormPost, OAuthPorts};
use crate::clients::{Client, ClientType};
use crate::grant_handle::GrantHandle;
use crate::grants::{AuthorizationGrant, Command, Reply};
use crate::guard::{self, AccessGrant};
use crate::launch::LaunchContext;
use crate::secret::hash_matches;
use crate::settings::IntrospectionStyle;
use serde_json::{json, Value};
use smart_protocol::introspection::IntrospectionResponse;
use smart_protocol::scopes::ScopeSet;
use smart_protocol::{OAuthError, OAuthErrorCode};

/// What to answer, for the edge to encode (always `no-store`).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A JSON body with this status.
    Json { status: u16, body: Value },
    /// 200 with an empty body (revocation, RFC 7009 §2.2).
    Done,
    /// The OAuth error, with the `WWW-Authenticate` challenge when it is about the client's
    /// credentials.
    Refused { error: OAuthError, challenge: Option<ClientChallenge> },
}

/// `POST /auth/introspect`: the token's description if it is active and the caller may
/// learn about it; otherwise `active: false` (or, in the Smile CDR style, a 404 with every
/// field empty), exactly as for an unknown token.
pub async fn introspect(ports: &OAuthPorts<'_>, post: &FormPost) -> Result<Answer, Failure> {
    let (caller, presented) = match caller(ports, post, Endpoint::Introspect).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal),
    };
    let found = find(ports, &presented, true).await?.filter(|found| may_introspect(&caller, found.client_id()));
    let written = |response: &IntrospectionResponse| serde_json::to_value(response).map_err(|e| Failure::Unexpected(e.to_string()));
    Ok(match found {
        Some(found) => Answer::Json { status: 200, body: written(&describe(ports, found))? },
        None if ports.settings.settings().await?.introspection_style == IntrospectionStyle::SmileCdr => Answer::Json {
            status: 404,
            body: json!({"active": false, "scope": "", "client_id": "", "username": "", "token_type": "", "exp": null, "iat": null, "sub": "", "aud": "", "iss": "", "jti": ""}),
        },
        None => Answer::Json { status: 200, body: written(&IntrospectionResponse::inactive())? },
    })
}

/// `POST /auth/revoke`: ends the grant of an access or refresh token issued to the caller.
/// 200 whatever the token (RFC 7009 §2.2).
pub async fn revoke(ports: &OAuthPorts<'_>, post: &FormPost) -> Result<Answer, Failure> {
    let (caller, presented) = match caller(ports, post, Endpoint::Revoke).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal),
    };
    let target = match find(ports, &presented, false).await? {
        Some(Found::Refresh { grant_id, grant, .. }) => Some((grant_id, grant.client_id)),
        Some(Found::Access { token, .. }) => token.grant_id.clone().map(|id| (id, token.client_id.clone())),
        None => None,
    };
    if let Some((grant_id, client_id)) = target {
        // Only the client the token was issued to may revoke it (RFC 7009 §2.1).
        if may_revoke(&caller, &client_id) {
            let _ = ports.grants.apply(&grant_id, &Command::Revoke { reason: "revoked by the client".into() }).await?;
        }
    }
    Ok(Answer::Done)
}

/// The calling client, authenticated, and the `token` it presents.
async fn caller(ports: &OAuthPorts<'_>, post: &FormPost, endpoint: Endpoint) -> Result<Result<(Client, String), Answer>, Failure> {
    let refuse = |error: OAuthError, challenge: Option<ClientChallenge>| Ok(Err(Answer::Refused { error, challenge }));
    let Ok(pairs) = &post.form else {
        return refuse(OAuthError::new(OAuthErrorCode::InvalidRequest, "the body must be an application/x-www-form-urlencoded form"), None);
    };
    if let Err(e) = request::check_pairs(pairs) {
        return refuse(e, None);
    }
    let auth = match request::parse_client_auth(pairs, post.authorization.as_deref()) {
        Ok(auth) => auth,
        Err(e) => return refuse(e, Some(ClientChallenge::for_auth(None))),
    };
    let challenge = Some(ClientChallenge::for_auth(Some(&auth)));
    if matches!(auth, ClientAuth::None { client_id: None }) {
        return refuse(OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication is required"), challenge);
    }
    let url = match endpoint {
        Endpoint::Introspect => ports.urls.introspect(),
        Endpoint::Revoke => ports.urls.revoke(),
    };
    let client = match client_auth::authenticate(ports, &auth, Some(&url)).await? {
        Ok(client) => client,
        Err(e) => return refuse(e, challenge),
    };
    if let Err(e) = may_call(&client, endpoint) {
        return refuse(e, challenge);
    }
    match pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v).filter(|v| !v.is_empty()) {
        Some(presented) => Ok(Ok((client, presented.clone()))),
        None => refuse(OAuthError::new(OAuthErrorCode::InvalidRequest, "token is required"), None),
    }
}

/// What a presented token is, if it is one of ours and still alive: an access token with the
/// grant it belongs to (when its record was read and holds one), or a refresh token's grant.
enum Found {
    Access { token: Box<AccessGrant>, grant: Option<Box<AuthorizationGrant>> },
    Refresh { grant_id: String, grant: Box<AuthorizationGrant>, expires_at: Option<i64> },
}

impl Found {
    fn client_id(&self) -> &str {
        match self {
            Found::Access { token, .. } => &token.client_id,
            Found::Refresh { grant, .. } => &grant.client_id,
        }
    }
}

/// A refresh token (its grant's current one), or an access token this server signed.
/// Revocation (`check_expiry` false) accepts an expired access token too: revoking it still
/// ends its grant. Introspection asks the grant itself whether it is active.
async fn find(ports: &OAuthPorts<'_>, presented: &str, check_expiry: bool) -> Result<Option<Found>, Failure> {
    if let Some(handle) = GrantHandle::parse(presented) {
        return Ok(match ports.grants.apply(handle.grant_id(), &Command::Status).await? {
            Ok(Reply::Active { grant, refresh_hash: Some(hash), refresh_expires_at }) if hash_matches(&hash, handle.secret()) => {
                Some(Found::Refresh { grant_id: handle.grant_id().to_owned(), grant, expires_at: refresh_expires_at })
            }
            _ => None,
        });
    }
    let ring = ports.keys.key_ring().await?;
    let now = if check_expiry { ports.clock.now() } else { 0 };
    let Ok(token) = guard::verify_access_token(presented, &ring, ports.verifier, ports.urls, now).await else { return Ok(None) };
    let mut grant = None;
    if let (true, Some(id)) = (check_expiry, &token.grant_id) {
        match ports.grants.apply(id, &Command::Status).await? {
            Ok(Reply::Active { grant: active, .. }) => grant = Some(active),
            Ok(Reply::BackendActive { .. }) => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(Found::Access { token: Box::new(token), grant }))
}

/// The introspection response of an active token (RFC 7662 §2.2, SMART 2.2 "Token
/// Introspection"): what the token response carried — scope, client, expiry and the launch
/// context (the grant's, as the token response gave it) — with the ID token's `iss` and `sub`,
/// and `fhirUser` as the ID token gives it (the absolute URL, only with `openid` and
/// `fhirUser` granted).
fn describe(ports: &OAuthPorts<'_>, found: Found) -> IntrospectionResponse {
    let fhir_user = |scope: &ScopeSet, fhir_user: Option<&str>| fhir_user.filter(|_| gives_fhir_user(scope)).map(|u| fhir_user_url(ports.urls, u));
    match found {
        Found::Access { token, grant } => {
            // A backend service's token has no grant record with a context (and no user).
            let context = match grant {
                Some(grant) => grant.context,
                None => LaunchContext { patient: token.patient.clone(), encounter: token.encounter.clone(), ..LaunchContext::default() },
            };
            IntrospectionResponse {
                active: true,
                scope: Some(token.scope.to_string()),
                client_id: Some(token.client_id.clone()),
                token_type: Some("Bearer".into()),
                exp: Some(token.exp),
                iat: Some(token.iat),
                sub: Some(token.sub.clone()),
                aud: Some(ports.urls.fhir_base()),
                iss: Some(ports.urls.issuer().to_owned()),
                jti: token.claims.get("jti").and_then(Value::as_str).map(str::to_owned),
                fhir_user: fhir_user(&token.scope, token.fhir_user.as_deref()),
                context,
                ..IntrospectionResponse::default()
            }
        }
        Found::Refresh { grant, expires_at, .. } => {
            let scope = ScopeSet::parse(&grant.scope).unwrap_or_default();
            IntrospectionResponse {
                active: true,
                exp: expires_at,
                fhir_user: fhir_user(&scope, Some(&grant.user.fhir_user)),
                scope: Some(grant.scope),
                client_id: Some(grant.client_id),
                token_type: Some("refresh_token".into()),
                sub: Some(grant.user.username),
                iss: Some(ports.urls.issuer().to_owned()),
                context: grant.context,
                ..IntrospectionResponse::default()
            }
        }
    }
}

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Introspect,
    Revoke,
}

/// Whether an authenticated `caller` may use `endpoint` at all.
pub fn may_call(caller: &Client, endpoint: Endpoint) -> Result<(), OAuthError> {
    match (endpoint, caller.client_type) {
        (Endpoint::Introspect, ClientType::Public) => Err(OAuthError::new(OAuthErrorCode::InvalidClient, "introspection needs a client that authenticates")),
        _ => Ok(()),
    }
}

/// Whether `caller` may learn about a token issued to `token_client_id`.
pub fn may_introspect(caller: &Client, token_client_id: &str) -> bool {
    caller.resource_server || caller.client_id == token_client_id
}

/// Whether `caller` may revoke a token issued to `token_client_id`.
pub fn may_revoke(caller: &Client, token_client_id: &str) -> bool {
    caller.client_id == token_client_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientRegistration;

    fn client(id: &str, client_type: &str, resource_server: bool) -> Client {
        let mut json = serde_json::json!({"client_id": id, "client_name": id, "client_type": client_type,
            "redirect_uris": ["https://app.example/cb"], "scope": "openid", "resource_server": resource_server});
        match client_type {
            "confidential-symmetric" => json["client_secrets"] = serde_json::json!(["s".repeat(40)]),
            "public" => {}
            _ => json["jwks_uri"] = "https://app.example/jwks".into(),
        }
        if client_type == "backend" {
            json["scope"] = "system/*.rs".into();
        }
        ClientRegistration::parse(&json.to_string()).unwrap().into_client().unwrap()
    }

    #[test]
    fn only_the_tokens_own_client_or_a_resource_server_learns_about_it() {
        let own = client("app", "confidential-symmetric", false);
        let other = client("other", "confidential-symmetric", false);
        let rs = client("rs", "confidential-asymmetric", true);
        assert!(may_introspect(&own, "app"));
        assert!(!may_introspect(&other, "app"));
        assert!(may_introspect(&rs, "app"));
        assert!(may_revoke(&own, "app"));
        assert!(!may_revoke(&rs, "app"), "a resource server reads, it does not revoke others' grants");
    }

    #[test]
    fn public_clients_revoke_but_do_not_introspect_and_key_clients_do_both() {
        let public = client("pub", "public", false);
        assert_eq!(may_call(&public, Endpoint::Introspect).unwrap_err().error, OAuthErrorCode::InvalidClient);
        assert!(may_call(&public, Endpoint::Revoke).is_ok());
        for kind in ["confidential-asymmetric", "backend", "confidential-symmetric"] {
            let c = client("k", kind, false);
            assert!(may_call(&c, Endpoint::Introspect).is_ok() && may_call(&c, Endpoint::Revoke).is_ok(), "{kind}");
        }
    }
}
