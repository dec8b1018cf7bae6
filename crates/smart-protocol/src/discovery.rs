//! Discovery documents: SMART App Launch 2.2 §2.0.4 `/.well-known/smart-configuration`
//! (<https://hl7.org/fhir/smart-app-launch/conformance.html#metadata>) and OpenID Connect
//! Discovery 1.0 §3 `/.well-known/openid-configuration`.
//!
//! Wire fields hold plain strings, so a client parsing another server's document is not
//! tripped by values this crate does not know.
//!
//! The documents are built from [`Features`], the list of what the server really implements:
//! a capability is advertised only once the code behind it has landed.

use crate::datatypes::Identifier;
use crate::jose::JwsAlgorithm;
use crate::urls::ServerUrls;
use serde::{Deserialize, Serialize};

/// What the running server implements. Each later feature flips its own entry on, and the
/// discovery documents follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// SMART capability strings (`launch-ehr`, `client-public`, `permission-v2`, …).
    pub capabilities: Vec<String>,
    /// Grant types the token endpoint accepts.
    pub grant_types: Vec<String>,
    /// Client authentication methods at the token endpoint.
    pub token_auth_methods: Vec<String>,
    /// Algorithms accepted in `private_key_jwt` client assertions.
    pub token_auth_signing_algs: Vec<JwsAlgorithm>,
    /// Scopes advertised in `scopes_supported`.
    pub scopes: Vec<String>,
    pub authorize: bool,
    pub introspection: bool,
    pub revocation: bool,
    pub management: bool,
    pub userinfo: bool,
    /// RFC 7591 dynamic client registration (`registration_endpoint`).
    pub registration: bool,
}

/// SMART App Launch 2.2 §2.0.4 `associated_endpoints`: another endpoint that shares this
/// server's authorization, and what it can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociatedEndpoint {
    pub url: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// What the server adds to its SMART configuration from its settings (SMART App Launch 2.2
/// §2.0.4: `associated_endpoints`, `user_access_brand_bundle`, `user_access_brand_identifier`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub associated_endpoints: Vec<AssociatedEndpoint>,
    /// The URL of the User-access Brands Bundle and the brand's identifier in it.
    pub user_access_brand: Option<(String, Identifier)>,
}

/// `GET {fhirBase}/.well-known/smart-configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmartConfiguration {
    /// Required only with `sso-openid-connect`; this server always sends it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    /// Required by SMART 2.2; `default` so that a client can read older servers' documents.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scopes_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub response_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_endpoint: Option<String>,
    /// RFC 7591 §3 (SMART App Launch 2.2 §2.0.4 lists it as optional).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub registration_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub associated_endpoints: Vec<AssociatedEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_access_brand_bundle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_access_brand_identifier: Option<Identifier>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

impl SmartConfiguration {
    pub fn new(urls: &ServerUrls, features: &Features) -> Self {
        Self {
            issuer: Some(urls.issuer().to_owned()),
            jwks_uri: Some(urls.jwks()),
            authorization_endpoint: features.authorize.then(|| urls.authorize()),
            token_endpoint: urls.token(),
            grant_types_supported: features.grant_types.clone(),
            token_endpoint_auth_methods_supported: features.token_auth_methods.clone(),
            token_endpoint_auth_signing_alg_values_supported: alg_names(&features.token_auth_signing_algs),
            scopes_supported: features.scopes.clone(),
            response_types_supported: response_types(features),
            introspection_endpoint: features.introspection.then(|| urls.introspect()),
            revocation_endpoint: features.revocation.then(|| urls.revoke()),
            management_endpoint: features.management.then(|| urls.manage()),
            registration_endpoint: features.registration.then(|| urls.register()),
            associated_endpoints: Vec::new(),
            user_access_brand_bundle: None,
            user_access_brand_identifier: None,
            capabilities: features.capabilities.clone(),
            // RFC 7636 S256 only: SMART App Launch 2.2 forbids `plain`.
            code_challenge_methods_supported: vec!["S256".to_owned()],
        }
    }

    /// The document with what the settings publish.
    pub fn publishing(mut self, published: Published) -> Self {
        self.associated_endpoints = published.associated_endpoints;
        if let Some((bundle, identifier)) = published.user_access_brand {
            self.user_access_brand_bundle = Some(bundle);
            self.user_access_brand_identifier = Some(identifier);
        }
        self
    }
}

/// `GET {issuer}/.well-known/openid-configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// OpenID Connect Discovery 1.0 §3 (RFC 7591 registration).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub registration_endpoint: Option<String>,
    /// RFC 8414 §2: how clients authenticate at introspection (the token endpoint's methods).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 8414 §2: at revocation, also `none` (a public client names itself, RFC 7009 §2.1).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 9207: the authorization response carries `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    /// OpenID Connect Discovery 1.0 §3: the claims the ID token may carry (with an
    /// authorization endpoint, the only way to one).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub claims_supported: Vec<String>,
}

impl OpenIdConfiguration {
    pub fn new(urls: &ServerUrls, features: &Features) -> Self {
        Self {
            issuer: urls.issuer().to_owned(),
            authorization_endpoint: features.authorize.then(|| urls.authorize()),
            token_endpoint: urls.token(),
            userinfo_endpoint: features.userinfo.then(|| urls.userinfo()),
            jwks_uri: urls.jwks(),
            scopes_supported: features.scopes.clone(),
            response_types_supported: response_types(features),
            grant_types_supported: features.grant_types.clone(),
            subject_types_supported: vec!["public".to_owned()],
            // OpenID Connect Core §15.1: RS256 must be supported for ID tokens.
            id_token_signing_alg_values_supported: vec![JwsAlgorithm::RS256.as_str().to_owned()],
            token_endpoint_auth_methods_supported: features.token_auth_methods.clone(),
            token_endpoint_auth_signing_alg_values_supported: alg_names(&features.token_auth_signing_algs),
            code_challenge_methods_supported: vec!["S256".to_owned()],
            introspection_endpoint: features.introspection.then(|| urls.introspect()),
            revocation_endpoint: features.revocation.then(|| urls.revoke()),
            registration_endpoint: features.registration.then(|| urls.register()),
            introspection_endpoint_auth_methods_supported: if features.introspection { features.token_auth_methods.clone() } else { Vec::new() },
            revocation_endpoint_auth_methods_supported: if features.revocation {
                features.token_auth_methods.iter().cloned().chain(std::iter::once("none".to_owned())).collect()
            } else {
                Vec::new()
            },
            authorization_response_iss_parameter_supported: features.authorize,
            claims_supported: if features.authorize { crate::token::ID_TOKEN_CLAIMS.iter().map(|c| (*c).to_owned()).collect() } else { Vec::new() },
        }
    }
}

fn alg_names(algs: &[JwsAlgorithm]) -> Vec<String> {
    algs.iter().map(|a| a.as_str().to_owned()).collect()
}

fn response_types(features: &Features) -> Vec<String> {
    if features.authorize {
        vec!["code".to_owned()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn urls() -> ServerUrls {
        ServerUrls::new("https://ehr.example.org", "/fhir").unwrap()
    }

    #[test]
    fn smart_configuration_has_the_required_fields_even_with_no_feature() {
        let doc = serde_json::to_value(SmartConfiguration::new(&urls(), &Features::default())).unwrap();
        assert_eq!(doc["token_endpoint"], "https://ehr.example.org/auth/token");
        assert_eq!(doc["jwks_uri"], "https://ehr.example.org/.well-known/jwks.json");
        assert_eq!(doc["capabilities"], Value::Array(vec![]));
        assert_eq!(doc["grant_types_supported"], Value::Array(vec![]));
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        // Nothing that does not exist is advertised.
        for absent in [
            "authorization_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "management_endpoint",
            "registration_endpoint",
            "associated_endpoints",
            "user_access_brand_bundle",
        ] {
            assert!(doc.get(absent).is_none(), "{absent} advertised without the feature");
        }
    }

    #[test]
    fn endpoints_appear_with_their_features() {
        let features = Features {
            authorize: true,
            introspection: true,
            capabilities: vec!["launch-ehr".into()],
            grant_types: vec!["authorization_code".into()],
            ..Features::default()
        };
        let doc = SmartConfiguration::new(&urls(), &features);
        assert_eq!(doc.authorization_endpoint.as_deref(), Some("https://ehr.example.org/auth/authorize"));
        assert_eq!(doc.introspection_endpoint.as_deref(), Some("https://ehr.example.org/auth/introspect"));
        assert_eq!(doc.response_types_supported, vec!["code"]);
        assert_eq!(doc.revocation_endpoint, None);
        assert_eq!(doc.registration_endpoint, None);
        let doc = SmartConfiguration::new(&urls(), &Features { registration: true, ..Features::default() });
        assert_eq!(doc.registration_endpoint.as_deref(), Some("https://ehr.example.org/auth/register"));
        let doc = OpenIdConfiguration::new(&urls(), &Features { registration: true, ..Features::default() });
        assert_eq!(doc.registration_endpoint.as_deref(), Some("https://ehr.example.org/auth/register"));
    }

    #[test]
    fn publishes_associated_endpoints_and_the_brand() {
        let identifier = Identifier { system: Some("urn:ietf:rfc:3986".into()), value: Some("https://ehr.example.org".into()), ..Identifier::default() };
        let published = Published {
            associated_endpoints: vec![AssociatedEndpoint { url: "https://other.example/fhir".into(), capabilities: vec!["launch-ehr".into()] }],
            user_access_brand: Some(("https://ehr.example.org/brands.json".into(), identifier)),
        };
        let doc = serde_json::to_value(SmartConfiguration::new(&urls(), &Features::default()).publishing(published)).unwrap();
        assert_eq!(doc["associated_endpoints"], serde_json::json!([{"url": "https://other.example/fhir", "capabilities": ["launch-ehr"]}]));
        assert_eq!(doc["user_access_brand_bundle"], "https://ehr.example.org/brands.json");
        assert_eq!(doc["user_access_brand_identifier"], serde_json::json!({"system": "urn:ietf:rfc:3986", "value": "https://ehr.example.org"}));
        let back: SmartConfiguration = serde_json::from_value(doc).unwrap();
        assert_eq!(back.associated_endpoints.len(), 1);
    }

    #[test]
    fn openid_configuration_issuer_is_the_url_it_is_served_under() {
        let doc = OpenIdConfiguration::new(&urls(), &Features::default());
        assert_eq!(format!("{}/.well-known/openid-configuration", doc.issuer), urls().openid_configuration());
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
        assert_eq!(json["subject_types_supported"], serde_json::json!(["public"]));
        assert!(json.get("claims_supported").is_none(), "no ID tokens without an authorization endpoint");
        let doc = OpenIdConfiguration::new(&urls(), &Features { authorize: true, ..Features::default() });
        assert_eq!(doc.claims_supported, ["iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "fhirUser", "name"]);
    }

    #[test]
    fn parses_another_servers_document_with_values_unknown_here() {
        let doc: SmartConfiguration = serde_json::from_value(serde_json::json!({
            "token_endpoint": "https://other.example/token", "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_signing_alg_values_supported": ["PS256", "EdDSA"],
            "capabilities": ["launch-standalone"], "code_challenge_methods_supported": ["S256"],
            "x_vendor_field": true
        }))
        .unwrap();
        assert_eq!(doc.token_endpoint_auth_signing_alg_values_supported, vec!["PS256", "EdDSA"]);
    }
}
