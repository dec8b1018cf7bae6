//! The introspection response (RFC 7662 §2.2) with what SMART App Launch 2.2 adds to it
//! (<https://hl7.org/fhir/smart-app-launch/token-introspection.html>): `scope`, `client_id` and
//! `exp` always; the launch context the token response carried (`patient`, `encounter`,
//! `fhirContext`, `need_patient_banner`, `smart_style_url`, `intent`, `tenant`); and, when the
//! token response carried an ID token, its `iss` and `sub` (SHALL) and `fhirUser` (SHOULD).

use crate::launch::LaunchContext;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    /// `Bearer` for an access token; this server says `refresh_token` for a refresh token.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jti: Option<String>,
    /// The user's FHIR resource as an absolute URL, as the ID token gives it.
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none", default)]
    pub fhir_user: Option<String>,
    /// The launch context, its members at the top level of the response.
    #[serde(flatten)]
    pub context: LaunchContext,
}

impl IntrospectionResponse {
    /// `{"active": false}`: an unknown, expired or revoked token, or one the caller may not
    /// learn about (RFC 7662 §2.2).
    pub fn inactive() -> IntrospectionResponse {
        IntrospectionResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_the_launch_context_at_the_top_level_and_nothing_absent() {
        assert_eq!(serde_json::to_value(IntrospectionResponse::inactive()).unwrap(), json!({"active": false}));
        let active = IntrospectionResponse {
            active: true,
            scope: Some("openid fhirUser".into()),
            client_id: Some("app".into()),
            exp: Some(10),
            fhir_user: Some("https://ehr.example/fhir/Practitioner/p".into()),
            context: LaunchContext { patient: Some("p1".into()), need_patient_banner: Some(false), ..LaunchContext::default() },
            ..IntrospectionResponse::default()
        };
        let written = serde_json::to_value(&active).unwrap();
        assert_eq!(
            written,
            json!({"active": true, "scope": "openid fhirUser", "client_id": "app", "exp": 10,
                "fhirUser": "https://ehr.example/fhir/Practitioner/p", "patient": "p1", "need_patient_banner": false})
        );
        assert_eq!(serde_json::from_value::<IntrospectionResponse>(written).unwrap(), active);
    }
}
