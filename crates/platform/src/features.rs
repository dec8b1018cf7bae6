//! What this build of the server implements. Discovery documents and the CapabilityStatement
//! are derived from here, so they advertise only what works; each feature that lands adds
//! itself.

use smart_protocol::discovery::Features;

/// SMART capabilities (SMART App Launch 2.2 §2.0.4.2) that work end to end up to the
/// authorization code.
pub const CAPABILITIES: [&str; 14] = [
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
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
pub const SCOPES: [&str; 12] = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "patient/*.cruds",
    "user/*.cruds",
    "patient/*.rs",
    "user/*.rs",
    "patient/*.read",
    "user/*.read",
];

pub fn current() -> Features {
    Features {
        capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        authorize: true,
        ..Features::default()
    }
}
