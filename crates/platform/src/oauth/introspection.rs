//! Who may introspect or revoke a token (RFC 7662 §2.1 and §4, RFC 7009 §2.1).
//!
//! Introspection tells a token's scopes, user and patient, so it is not for any client that
//! happens to have credentials: the caller must authenticate (a secret or `private_key_jwt`;
//! public clients cannot), and a token is described only to the client it was issued to or to
//! a client registered as a resource server (`resource_server: true`). Everyone else hears
//! `active: false`, exactly as for an unknown token, so introspection reveals nothing about
//! other clients' tokens. Revocation accepts public clients (they name themselves), and a
//! token is revoked only for the client it was issued to.

use crate::clients::{Client, ClientType};
use smart_protocol::{OAuthError, OAuthErrorCode};

/// The two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Introspect,
    Revoke,
}

/// Whether an authenticated `caller` may use `endpoint` at all.
pub fn may_call(caller: &Client, endpoint: Endpoint) -> Result<(), OAuthError> {
    match (endpoint, caller.client_type) {
        (Endpoint::Introspect, ClientType::Public) => {
            Err(OAuthError::new(OAuthErrorCode::InvalidClient, "introspection needs a client that authenticates"))
        }
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
