//! What this build of the server implements. Discovery documents and the CapabilityStatement
//! are derived from here, so they advertise only what works; each feature that lands adds
//! itself.

use smart_protocol::discovery::Features;

/// SMART capabilities (SMART App Launch 2.2 §2.0.4.2) that work end to end.
pub const CAPABILITIES: [&str; 19] = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-standalone-encounter",
    "context-passthrough-banner",
    "context-passthrough-style",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

/// Examples of the scopes the server understands (`scopes_supported` is advisory).
pub const SCOPES: [&str; 16] = [
    "openid",
    "fhirUser",
    "profile",
    "offline_access",
    "online_access",
    "launch",
    "launch/patient",
    "launch/encounter",
    "patient/*.cruds",
    "user/*.cruds",
    "patient/*.rs",
    "user/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.rs",
    "system/*.read",
];

pub fn current() -> Features {
    Features {
        capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into(), "client_credentials".into()],
        token_auth_methods: vec!["client_secret_basic".into(), "client_secret_post".into(), "private_key_jwt".into()],
        token_auth_signing_algs: crate::assertions::ALGORITHMS.to_vec(),
        authorize: true,
        introspection: true,
        revocation: true,
        userinfo: true,
        management: true,
        registration: true,
    }
}
