//! The launch context (SMART App Launch 2.2 §2.0.10,
//! <https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#launch-context-arrives-with-your-access_token>):
//! what an EHR launch hands the app with its access token. One definition for the launch API
//! that takes it, the grant record that stores it, the token and introspection responses that
//! carry it (flattened) and the SDK that reads it.
//!
//! Its serialized form is stored in grant records (Durable Objects): a member is renamed or
//! reordered never. Unknown members are ignored when read; the launch API refuses them where it
//! accepts a request (`platform::launch`).

use crate::datatypes::{identifier_or_none, Identifier};
use serde::{Deserialize, Serialize};

/// What an EHR launch hands the app.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// Read leniently: an item that names nothing (no reference, canonical or identifier, as a
    /// stored record of an older version may hold) is dropped, never echoed to an app.
    #[serde(default, rename = "fhirContext", deserialize_with = "items_naming_something", skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<FhirContextItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_style_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// One `fhirContext` entry (SMART 2.2 §2.0.10.1): a `reference`, a `canonical` or an
/// `identifier`, with an optional `type` and `role`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FhirContextItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
    /// Read leniently ([`identifier_or_none`]): a value that is no object is absent.
    #[serde(default, deserialize_with = "identifier_or_none", skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// The resource type the entry names.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl LaunchContext {
    pub fn is_empty(&self) -> bool {
        *self == LaunchContext::default()
    }
}

impl FhirContextItem {
    /// Whether the item names a resource: a `reference`, a `canonical` or an `identifier`.
    pub fn names_something(&self) -> bool {
        self.reference.is_some() || self.canonical.is_some() || self.identifier.is_some()
    }
}

fn items_naming_something<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<FhirContextItem>, D::Error> {
    let items = Vec::<FhirContextItem>::deserialize(deserializer)?;
    Ok(items.into_iter().filter(FhirContextItem::names_something).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_keep_their_names_and_order() {
        let context = LaunchContext {
            patient: Some("p".into()),
            encounter: Some("e".into()),
            fhir_context: vec![FhirContextItem { reference: Some("Observation/o".into()), role: Some("launch".into()), ..FhirContextItem::default() }],
            intent: Some("i".into()),
            need_patient_banner: Some(false),
            smart_style_url: Some("https://s".into()),
            tenant: Some("t".into()),
        };
        let text = r#"{"patient":"p","encounter":"e","fhirContext":[{"reference":"Observation/o","role":"launch"}],"intent":"i","need_patient_banner":false,"smart_style_url":"https://s","tenant":"t"}"#;
        assert_eq!(serde_json::to_string(&context).unwrap(), text);
        assert_eq!(serde_json::from_str::<LaunchContext>(text).unwrap(), context);
        assert_eq!(serde_json::to_string(&LaunchContext::default()).unwrap(), "{}");
        assert!(LaunchContext::default().is_empty() && !context.is_empty());
    }

    #[test]
    fn an_identifier_that_is_no_object_is_absent_and_nothing_fails() {
        let read: LaunchContext = serde_json::from_value(json!({"fhirContext": [{"identifier": "urn:s|v", "type": "Patient"}, {"identifier": null},
            {"reference": "Encounter/e", "identifier": 7}]}))
        .unwrap();
        // The first two then name nothing, and are dropped; the third keeps its reference.
        assert_eq!(read.fhir_context, [FhirContextItem { reference: Some("Encounter/e".into()), ..FhirContextItem::default() }]);
        let fields =
            crate::fields::Object::objects(json!({"fhirContext": [{"type": "Patient"}, {"canonical": "http://q|1"}]}).as_object().unwrap(), "fhirContext")
                .len();
        assert_eq!(fields, 2);
        let map = json!({"fhirContext": [{"type": "Patient"}, {"canonical": "http://q|1"}]});
        assert_eq!(LaunchContext::read(map.as_object().unwrap()).fhir_context.len(), 1, "the SDK's reader drops it too");
    }
}
