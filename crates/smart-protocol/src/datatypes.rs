//! The FHIR R4 data types a launch context names (<https://hl7.org/fhir/R4/datatypes.html>):
//! `Identifier` with its `CodeableConcept` (and `Coding`), `Period` and `Reference`. Only their
//! elements, not the `id` / `extension` every FHIR element may carry.
//!
//! The members of each type are declared (and so written) in alphabetical order: before these
//! types existed, a stored `fhirContext` identifier was a `serde_json::Value`, whose objects
//! write their keys sorted; a record written then is written again byte for byte.
//!
//! An `Identifier` is read leniently, by serde as by [`crate::fields`]: an unknown member is
//! ignored and a member of the wrong type is read as absent, never failing the document around
//! it (a stored grant record, a token response). What the launch API accepts is checked
//! strictly where it is accepted (`platform::launch`).

use serde::{Deserialize, Deserializer, Serialize};

/// A FHIR `Identifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Identifier {
    /// The organisation that issued the identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigner: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    /// `usual | official | temp | secondary | old`.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A FHIR `CodeableConcept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CodeableConcept {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
}

/// A FHIR `Coding`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Coding {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub display: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub system: Option<String>,
    #[serde(rename = "userSelected", skip_serializing_if = "Option::is_none", default)]
    pub user_selected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<String>,
}

/// A FHIR `Period` (`dateTime` texts, as sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Period {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start: Option<String>,
}

/// A FHIR `Reference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub display: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub identifier: Option<Box<Identifier>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub type_: Option<String>,
}

/// Any JSON object is an `Identifier`: read through [`crate::fields`], so serde and the SDK's
/// reader agree by construction. Anything else is refused (an optional member holding one is
/// read as absent: [`identifier_or_none`]).
impl<'de> Deserialize<'de> for Identifier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Object(members) => Ok(Identifier::read(&members)),
            _ => Err(serde::de::Error::custom("an Identifier is a JSON object")),
        }
    }
}

/// An optional `Identifier` member: anything but an object (null, a string, an array) is read
/// as absent, as [`crate::fields`] reads it.
pub fn identifier_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Identifier>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Object(members) => Some(Identifier::read(&members)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_identifier_round_trips_in_alphabetical_order() {
        let text = r#"{"assigner":{"display":"Org","identifier":{"system":"urn:o","value":"1"},"reference":"Organization/o1","type":"Organization"},"period":{"end":"2030","start":"2020-01-01"},"system":"urn:s","type":{"coding":[{"code":"MR","display":"Medical record number","system":"http://terminology.hl7.org/CodeSystem/v2-0203","userSelected":false,"version":"2.9"}],"text":"MRN"},"use":"official","value":"v"}"#;
        let identifier: Identifier = serde_json::from_str(text).unwrap();
        assert_eq!(identifier.type_.as_ref().unwrap().coding[0].code.as_deref(), Some("MR"));
        assert_eq!(identifier.assigner.as_ref().unwrap().identifier.as_ref().unwrap().value.as_deref(), Some("1"));
        assert_eq!(serde_json::to_string(&identifier).unwrap(), text);
        // The same text as a serde_json::Value (the old stored form) writes the same bytes.
        assert_eq!(serde_json::to_string(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap(), text);
    }

    #[test]
    fn unknown_or_wrongly_typed_members_are_read_as_absent() {
        let identifier: Identifier = serde_json::from_value(
            json!({"system": "urn:s", "value": 7, "extension": [{"url": "x"}], "period": "2020", "type": {"coding": [1, {"code": "c"}]}}),
        )
        .unwrap();
        assert_eq!(
            identifier,
            Identifier {
                system: Some("urn:s".into()),
                type_: Some(CodeableConcept { coding: vec![Coding { code: Some("c".into()), ..Coding::default() }], text: None }),
                ..Identifier::default()
            }
        );
        assert!(serde_json::from_value::<Identifier>(json!("urn:s|v")).is_err());
    }
}
