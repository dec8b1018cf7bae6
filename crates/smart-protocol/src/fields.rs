//! Reading the wire types without serde, for a client whose JSON is not serde's: the browser
//! SDK, where serde's generated visitors were the largest part of its wasm. A reader hands a
//! JSON object over as [`Object`]; the types keep one definition (with their serde derives for
//! the server) and these readers follow the same names and the same required members. The
//! tests check both ways of reading against each other on generated documents.
//!
//! Two differences, by design: a member of the wrong type is read as absent (serde refuses the
//! whole document), so a stray vendor value in an optional member does not stop a launch, while
//! a required member of the wrong type is still missing; and an array where an object belongs
//! is of the wrong type (serde's derive would read it as the struct's fields in order). An
//! `Identifier` (and what it holds) is the exception: serde reads it through its reader here,
//! so that a stored one of an unexpected shape never fails the record around it
//! ([`crate::datatypes`]).

use crate::datatypes::{CodeableConcept, Coding, Identifier, Period, Reference};
use crate::discovery::SmartConfiguration;
use crate::jose::RawHeader;
use crate::launch::{FhirContextItem, LaunchContext};
use crate::token::TokenResponse;

/// A JSON object, member by member.
pub trait Object {
    /// A string member.
    fn text(&self, key: &str) -> Option<&str>;
    /// An integer member (`3`, `-7`; not `3.5`).
    fn integer(&self, key: &str) -> Option<i64>;
    fn boolean(&self, key: &str) -> Option<bool>;
    /// An object member.
    fn object(&self, key: &str) -> Option<&dyn Object>;
    /// The strings of an array member (other items skipped); empty when absent.
    fn texts(&self, key: &str) -> Vec<String>;
    /// The objects of an array member (other items skipped); empty when absent.
    fn objects(&self, key: &str) -> Vec<&dyn Object>;
}

/// A required member that is missing (or not of its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("missing field `{0}`")]
pub struct Missing(pub &'static str);

fn text(o: &dyn Object, key: &str) -> Option<String> {
    o.text(key).map(str::to_owned)
}

fn required(o: &dyn Object, key: &'static str) -> Result<String, Missing> {
    text(o, key).ok_or(Missing(key))
}

impl TokenResponse {
    pub fn read(o: &dyn Object) -> Result<TokenResponse, Missing> {
        Ok(TokenResponse {
            access_token: required(o, "access_token")?,
            token_type: required(o, "token_type")?,
            expires_in: o.integer("expires_in"),
            scope: text(o, "scope"),
            refresh_token: text(o, "refresh_token"),
            id_token: text(o, "id_token"),
            context: LaunchContext::read(o),
        })
    }
}

impl LaunchContext {
    /// The launch context's members of `o` (a token or introspection response, or the context
    /// alone).
    pub fn read(o: &dyn Object) -> LaunchContext {
        LaunchContext {
            patient: text(o, "patient"),
            encounter: text(o, "encounter"),
            fhir_context: o.objects("fhirContext").into_iter().map(FhirContextItem::read).filter(FhirContextItem::names_something).collect(),
            intent: text(o, "intent"),
            need_patient_banner: o.boolean("need_patient_banner"),
            smart_style_url: text(o, "smart_style_url"),
            tenant: text(o, "tenant"),
        }
    }
}

impl FhirContextItem {
    pub fn read(o: &dyn Object) -> FhirContextItem {
        FhirContextItem {
            reference: text(o, "reference"),
            canonical: text(o, "canonical"),
            identifier: o.object("identifier").map(Identifier::read),
            resource_type: text(o, "type"),
            role: text(o, "role"),
        }
    }
}

/// Also serde's reading of an `Identifier` (see [`crate::datatypes`]).
impl Identifier {
    pub fn read(o: &dyn Object) -> Identifier {
        Identifier {
            assigner: o.object("assigner").map(Reference::read),
            period: o.object("period").map(Period::read),
            system: text(o, "system"),
            type_: o.object("type").map(CodeableConcept::read),
            use_: text(o, "use"),
            value: text(o, "value"),
        }
    }
}

impl CodeableConcept {
    pub fn read(o: &dyn Object) -> CodeableConcept {
        CodeableConcept { coding: o.objects("coding").into_iter().map(Coding::read).collect(), text: text(o, "text") }
    }
}

impl Coding {
    pub fn read(o: &dyn Object) -> Coding {
        Coding {
            code: text(o, "code"),
            display: text(o, "display"),
            system: text(o, "system"),
            user_selected: o.boolean("userSelected"),
            version: text(o, "version"),
        }
    }
}

impl Period {
    pub fn read(o: &dyn Object) -> Period {
        Period { end: text(o, "end"), start: text(o, "start") }
    }
}

impl Reference {
    pub fn read(o: &dyn Object) -> Reference {
        Reference {
            display: text(o, "display"),
            identifier: o.object("identifier").map(|i| Box::new(Identifier::read(i))),
            reference: text(o, "reference"),
            type_: text(o, "type"),
        }
    }
}

impl SmartConfiguration {
    pub fn read(o: &dyn Object) -> Result<SmartConfiguration, Missing> {
        Ok(SmartConfiguration {
            issuer: text(o, "issuer"),
            jwks_uri: text(o, "jwks_uri"),
            authorization_endpoint: text(o, "authorization_endpoint"),
            token_endpoint: required(o, "token_endpoint")?,
            grant_types_supported: o.texts("grant_types_supported"),
            token_endpoint_auth_methods_supported: o.texts("token_endpoint_auth_methods_supported"),
            token_endpoint_auth_signing_alg_values_supported: o.texts("token_endpoint_auth_signing_alg_values_supported"),
            scopes_supported: o.texts("scopes_supported"),
            response_types_supported: o.texts("response_types_supported"),
            introspection_endpoint: text(o, "introspection_endpoint"),
            revocation_endpoint: text(o, "revocation_endpoint"),
            management_endpoint: text(o, "management_endpoint"),
            registration_endpoint: text(o, "registration_endpoint"),
            associated_endpoints: o
                .objects("associated_endpoints")
                .into_iter()
                .filter_map(|e| Some(crate::discovery::AssociatedEndpoint { url: text(e, "url")?, capabilities: e.texts("capabilities") }))
                .collect(),
            user_access_brand_bundle: text(o, "user_access_brand_bundle"),
            user_access_brand_identifier: o.object("user_access_brand_identifier").map(Identifier::read),
            capabilities: o.texts("capabilities"),
            code_challenge_methods_supported: o.texts("code_challenge_methods_supported"),
        })
    }
}

impl RawHeader {
    pub fn read(o: &dyn Object) -> Result<RawHeader, Missing> {
        Ok(RawHeader { alg: required(o, "alg")?, typ: text(o, "typ"), kid: text(o, "kid") })
    }
}

/// serde_json's objects, for the server and for the tests that compare the two readers.
impl Object for serde_json::Map<String, serde_json::Value> {
    fn text(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }
    fn integer(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }
    fn boolean(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }
    fn object(&self, key: &str) -> Option<&dyn Object> {
        self.get(key)?.as_object().map(|o| o as &dyn Object)
    }
    fn texts(&self, key: &str) -> Vec<String> {
        let items = self.get(key).and_then(serde_json::Value::as_array);
        items.into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }
    fn objects(&self, key: &str) -> Vec<&dyn Object> {
        let items = self.get(key).and_then(serde_json::Value::as_array);
        items.into_iter().flatten().filter_map(|v| v.as_object().map(|o| o as &dyn Object)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    /// A value for a member: usually of the member's type, sometimes another JSON type.
    fn member(kind: u8) -> BoxedStrategy<Value> {
        let text = "[a-zA-Z0-9 :/._-]{0,12}".prop_map(Value::from).boxed();
        let other =
            prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i32>().prop_map(Value::from), Just(json!({})), Just(json!([1, "x"]))]
                .boxed();
        let typed = match kind {
            0 => text,
            1 => any::<i64>().prop_map(Value::from).boxed(),
            2 => any::<bool>().prop_map(Value::from).boxed(),
            _ => prop::collection::vec("[a-z_]{0,8}", 0..4).prop_map(|v| json!(v)).boxed(),
        };
        prop_oneof![8 => typed, 1 => other].boxed()
    }

    /// An object with some of `members` (name, kind) present, plus an unknown one.
    fn document(members: &'static [(&'static str, u8)]) -> impl Strategy<Value = Map<String, Value>> {
        let values: Vec<_> = members.iter().map(|(_, kind)| prop::option::weighted(0.7, member(*kind))).collect();
        (values, member(0)).prop_map(move |(values, extra)| {
            let mut map: Map<String, Value> = members.iter().zip(values).filter_map(|((k, _), v)| Some(((*k).to_owned(), v?))).collect();
            map.insert("x-vendor".into(), extra);
            map
        })
    }

    /// Whether every present member has the type the struct gives it (where serde and the
    /// reader must agree exactly).
    fn well_typed(doc: &Map<String, Value>, members: &[(&str, u8)]) -> bool {
        members.iter().all(|(k, kind)| match (doc.get(*k), kind) {
            (None, _) => true,
            (Some(v), 0) => v.is_string(),
            (Some(v), 1) => v.is_i64(),
            (Some(v), 2) => v.is_boolean(),
            (Some(v), _) => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        })
    }

    const TOKEN: &[(&str, u8)] = &[
        ("access_token", 0),
        ("token_type", 0),
        ("expires_in", 1),
        ("scope", 0),
        ("refresh_token", 0),
        ("id_token", 0),
        ("patient", 0),
        ("encounter", 0),
        ("need_patient_banner", 2),
        ("smart_style_url", 0),
        ("intent", 0),
        ("tenant", 0),
    ];
    const CONFIG: &[(&str, u8)] = &[
        ("issuer", 0),
        ("registration_endpoint", 0),
        ("user_access_brand_bundle", 0),
        ("jwks_uri", 0),
        ("authorization_endpoint", 0),
        ("token_endpoint", 0),
        ("grant_types_supported", 3),
        ("token_endpoint_auth_methods_supported", 3),
        ("token_endpoint_auth_signing_alg_values_supported", 3),
        ("scopes_supported", 3),
        ("response_types_supported", 3),
        ("introspection_endpoint", 0),
        ("revocation_endpoint", 0),
        ("management_endpoint", 0),
        ("capabilities", 3),
        ("code_challenge_methods_supported", 3),
    ];
    const HEADER: &[(&str, u8)] = &[("alg", 0), ("typ", 0), ("kid", 0)];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn the_token_response_reads_as_serde_reads_it(doc in document(TOKEN)) {
            let serde = serde_json::from_value::<TokenResponse>(Value::Object(doc.clone()));
            let read = TokenResponse::read(&doc);
            if well_typed(&doc, TOKEN) {
                prop_assert_eq!(serde.ok(), read.ok());
            } else if let Ok(serde) = serde {
                // Only a wrongly typed member can make the two differ, and then serde refuses.
                prop_assert_eq!(Ok(serde), read);
            }
        }

        #[test]
        fn the_smart_configuration_reads_as_serde_reads_it(doc in document(CONFIG)) {
            let serde = serde_json::from_value::<SmartConfiguration>(Value::Object(doc.clone()));
            let read = SmartConfiguration::read(&doc);
            if well_typed(&doc, CONFIG) {
                prop_assert_eq!(serde.ok(), read.ok());
            } else if let Ok(serde) = serde {
                prop_assert_eq!(Ok(serde), read);
            }
        }

        #[test]
        fn the_jws_header_reads_as_serde_reads_it(doc in document(HEADER)) {
            let serde = serde_json::from_value::<RawHeader>(Value::Object(doc.clone())).map(|h| (h.alg, h.typ, h.kid));
            let read = RawHeader::read(&doc).map(|h| (h.alg, h.typ, h.kid));
            if well_typed(&doc, HEADER) {
                prop_assert_eq!(serde.ok(), read.ok());
            }
        }
    }

    #[test]
    fn launch_context_items_and_identifiers_are_read() {
        let doc = json!({"access_token": "a", "token_type": "Bearer", "fhirContext": [
            {"reference": "Encounter/e1", "role": "launch"}, 7, {"identifier": {"system": "urn:s", "value": "v", "period": {}}, "type": "Encounter"}]});
        let serde: TokenResponse = serde_json::from_value(json!({"access_token": "a", "token_type": "Bearer", "fhirContext": [
            {"reference": "Encounter/e1", "role": "launch"}, {"identifier": {"system": "urn:s", "value": "v", "period": {}}, "type": "Encounter"}]}))
        .unwrap();
        assert_eq!(TokenResponse::read(doc.as_object().unwrap()), Ok(serde));
        assert_eq!(TokenResponse::read(json!({"token_type": "Bearer"}).as_object().unwrap()), Err(Missing("access_token")));
        assert_eq!(TokenResponse::read(json!({"access_token": 5, "token_type": "Bearer"}).as_object().unwrap()), Err(Missing("access_token")));
    }
}
