//! The server's CapabilityStatement (`GET [base]/metadata`, R4 §3.1.0.13,
//! <https://hl7.org/fhir/R4/capabilitystatement.html>), with the SMART security service and
//! the `oauth-uris` extension (SMART App Launch 2.2 §2.0.4.1, "FHIR CapabilityStatement").

use super::params::{Kind, Param, RESOURCE_TYPES, TYPES};
use super::search;
use crate::features;
use crate::settings::ServerSettings;
use serde_json::{json, Value};
use smart_protocol::ServerUrls;

const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// Builds the CapabilityStatement. `date` is an R4 dateTime (the build or start time); the
/// resource list holds exactly the interactions implemented, which grows with the FHIR store.
pub fn capability_statement(urls: &ServerUrls, settings: &ServerSettings, date: &str) -> Value {
    let features = features::current();
    let mut uris = vec![json!({ "url": "token", "valueUri": urls.token() })];
    let optional = [
        (features.authorize, "authorize", urls.authorize()),
        (features.introspection, "introspect", urls.introspect()),
        (features.revocation, "revoke", urls.revoke()),
        (features.management, "manage", urls.manage()),
    ];
    for (enabled, name, uri) in optional {
        if enabled {
            uris.push(json!({ "url": name, "valueUri": uri }));
        }
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": settings.server_name,
        "kind": "instance",
        "software": { "name": "smart-edge", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": settings.server_name, "url": urls.fhir_base() },
        "fhirVersion": "4.0.1",
        // Bulk Data Access 2.0.0 (`super::bulk`).
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": true,
                "extension": [{ "url": OAUTH_URIS, "extension": uris }],
                "service": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR"
                    }],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
                }]
            },
            "documentation": rest_documentation(),
            "resource": resources(),
            "interaction": [{ "code": "transaction" }, { "code": "batch" }],
            "operation": bulk_operations()
        }]
    })
}

/// The Bulk Data operations (`super::bulk`), by their OperationDefinitions.
fn bulk_operations() -> Vec<Value> {
    ["export", "patient-export", "group-export"]
        .iter()
        .map(|name| json!({ "name": name, "definition": format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{name}") }))
        .collect()
}

/// What a parameter of `kind` takes besides plain values, from the parser's own lists
/// ([`search::modifiers`], [`search::prefixes`]).
fn kind_documentation(kind: Kind) -> String {
    let mut modifiers: Vec<String> = search::modifiers(kind).iter().map(|m| format!("`:{m}`")).collect();
    if kind == Kind::Reference {
        modifiers.push("`:[type]`".to_owned());
    }
    let mut text = format!("{}: {}", kind.code(), modifiers.join(" "));
    let prefixes = search::prefixes(kind);
    if !prefixes.is_empty() {
        text.push_str(&format!(", prefixes {}", prefixes.join(" ")));
    }
    if kind == Kind::Reference {
        text.push_str(", chains one level deep (`name.param`, `name:[type].param`)");
    }
    text
}

/// A reference parameter whose R4 target is any resource (`Provenance:target`, `List:item`, …).
fn points_anywhere(p: &Param) -> bool {
    p.targets.contains(&"Resource") || p.targets.len() >= RESOURCE_TYPES.len()
}

/// The rest `documentation`: what searches take beyond each parameter's own entry.
fn rest_documentation() -> String {
    let anywhere: Vec<String> = TYPES
        .iter()
        .flat_map(|(source, own)| own.iter().filter(|p| p.kind == Kind::Reference && points_anywhere(p)).map(move |p| format!("`{source}:{}`", p.name)))
        .collect();
    // R4's `searchParam` has no element for modifiers; they follow from each one's `type`.
    let kinds = [Kind::Token, Kind::String, Kind::Uri, Kind::Reference, Kind::Date, Kind::Quantity, Kind::Number];
    let by_kind: Vec<String> = kinds.into_iter().map(kind_documentation).collect();
    format!(
        "Modifiers and prefixes by search parameter type (several values, `,`, are alternatives): {}. \
         Every search takes `_count` (at most {}), `_sort` (up to {} token, date or string keys), `_total=accurate|none`, `_summary=true|text|data|count`, `_elements`, \
         `_include` and `_revinclude` (with `:iterate`, one more round), and `_has` one level deep. Unknown parameters are reported in an OperationOutcome entry, \
         or refused with `Prefer: handling=strict`. Besides each type's `searchRevInclude`, these reference parameters may point at any type and are served as \
         `_revinclude` on every type: {}.",
        by_kind.join("; "),
        search::MAX_COUNT,
        search::MAX_SORT,
        anywhere.join(", ")
    )
}

/// Each served type with exactly the interactions and search parameters implemented.
fn resources() -> Vec<Value> {
    use super::params::COMMON;
    TYPES
        .iter()
        .map(|(resource_type, params)| {
            let search_params: Vec<Value> = COMMON
                .iter()
                .chain(params.iter())
                .map(|p| json!({ "name": p.name, "definition": p.definition(resource_type), "type": p.kind.code() }))
                .collect();
            // `_include` (and `:iterate`) takes any reference parameter of the type; `_revinclude`
            // any reference parameter of a type that names this one among its targets (those
            // that may point at any type are listed once, in the rest documentation).
            let includes: Vec<String> = params.iter().filter(|p| p.kind == Kind::Reference).map(|p| format!("{resource_type}:{}", p.name)).collect();
            let revincludes: Vec<String> = TYPES
                .iter()
                .flat_map(|(source, own)| {
                    own.iter()
                        .filter(|p| p.kind == Kind::Reference && !points_anywhere(p) && p.targets.contains(resource_type))
                        .map(move |p| format!("{source}:{}", p.name))
                })
                .collect();
            let interactions: Vec<Value> = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"]
                .iter()
                .map(|code| json!({ "code": code }))
                .collect();
            let mut resource = json!({
                "type": resource_type,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                // If-None-Exist, PUT [type]?search and DELETE [type]?search, alone and in bundles
                // (a delete whose criteria match several resources is 412: one at a time).
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                // If-None-Match and If-Modified-Since on read and vread (304).
                "conditionalRead": "full-support",
                "interaction": interactions,
                "searchParam": search_params
            });
            // R4 JSON has no empty arrays: a type with none leaves the element out.
            if !includes.is_empty() {
                resource["searchInclude"] = json!(includes);
            }
            if !revincludes.is_empty() {
                resource["searchRevInclude"] = json!(revincludes);
            }
            if *resource_type == "Patient" {
                // Patient/{id}/$everything (api::everything).
                resource["operation"] = json!([{ "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }]);
            }
            resource
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_smart_service_and_oauth_uris() {
        let urls = ServerUrls::new("https://ehr.example.org", "/fhir").unwrap();
        let cs = capability_statement(&urls, &ServerSettings::default(), "2026-11-28");
        let security = &cs["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        let ext = &security["extension"][0];
        assert_eq!(ext["url"], OAUTH_URIS);
        assert_eq!(ext["extension"][0], json!({"url": "token", "valueUri": "https://ehr.example.org/auth/token"}));
        assert_eq!(cs["fhirVersion"], "4.0.1");
        assert_eq!(cs["implementation"]["url"], "https://ehr.example.org/fhir");
        let observation = cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Observation").unwrap();
        let code = json!({"name": "code", "definition": "http://hl7.org/fhir/SearchParameter/clinical-code", "type": "token"});
        assert!(observation["searchParam"].as_array().unwrap().iter().any(|p| p == &code));
        assert_eq!(cs["rest"][0]["resource"].as_array().unwrap().len(), 145);
        let patient = cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Patient").unwrap();
        assert_eq!(patient["operation"][0]["name"], "everything");
        assert!(observation["interaction"].as_array().unwrap().contains(&json!({"code": "patch"})));
        assert_eq!(cs["rest"][0]["operation"][2]["definition"], "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export");
        assert_eq!((observation["conditionalUpdate"].clone(), observation["conditionalDelete"].clone()), (json!(true), json!("single")));
        assert!(serde_json::to_string(&cs).unwrap().len() < 400_000, "the statement stays small enough to build per request");
    }

    #[test]
    fn advertises_the_modifiers_prefixes_and_includes_served() {
        let urls = ServerUrls::new("https://ehr.example.org", "/fhir").unwrap();
        let cs = capability_statement(&urls, &ServerSettings::default(), "2026-11-28");
        let of = |t: &str| cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == t).unwrap().clone();
        let observation = of("Observation");
        assert_eq!(observation["conditionalRead"], json!("full-support"));
        let includes: Vec<&str> = observation["searchInclude"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(
            includes.contains(&"Observation:encounter") && includes.contains(&"Observation:subject") && !includes.contains(&"Observation:code"),
            "{includes:?}"
        );
        let patient = of("Patient");
        let rev: Vec<&str> = patient["searchRevInclude"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for r in ["Observation:subject", "Observation:patient", "Encounter:patient", "CareTeam:participant", "MedicationAdministration:subject"] {
            assert!(rev.contains(&r), "{r}");
        }
        assert!(!rev.contains(&"Observation:encounter"), "Observation:encounter points at Encounters only");
        assert!(!rev.contains(&"Provenance:target"), "any-type targets are in the rest documentation");
        let rest = cs["rest"][0]["documentation"].as_str().unwrap();
        assert!(rest.contains("`Provenance:target`") && rest.contains("`List:item`") && rest.contains("handling=strict"), "{rest}");
        for kind in [
            "token: `:missing` `:not` `:text`;",
            "string: `:missing` `:exact` `:contains`;",
            "uri: `:missing` `:below` `:above`;",
            "reference: `:missing` `:[type]`, chains one level deep (`name.param`, `name:[type].param`);",
            "date: `:missing`, prefixes eq ne gt lt ge le sa eb ap;",
            "quantity: `:missing`, prefixes eq ne gt lt ge le sa eb ap;",
            "number: `:missing`, prefixes eq ne gt lt ge le sa eb ap.",
        ] {
            assert!(rest.contains(kind), "{kind} in {rest}");
        }
        // No empty arrays (R4 JSON): Binary has no reference parameter, nothing points at a Binary by type.
        let binary = of("Binary");
        assert!(binary.get("searchInclude").is_none() && binary.get("searchRevInclude").is_none(), "{binary}");
        fn no_empty_array(v: &Value) -> bool {
            match v {
                Value::Array(a) => !a.is_empty() && a.iter().all(no_empty_array),
                Value::Object(o) => o.values().all(no_empty_array),
                _ => true,
            }
        }
        assert!(no_empty_array(&cs));
        // Every advertised include is one the parser accepts.
        for r in cs["rest"][0]["resource"].as_array().unwrap() {
            let t = r["type"].as_str().unwrap();
            for (key, list) in [("_include", &r["searchInclude"]), ("_revinclude", &r["searchRevInclude"])] {
                for v in list.as_array().into_iter().flatten() {
                    let pair = (key.to_owned(), v.as_str().unwrap().to_owned());
                    assert!(search::parse(t, std::slice::from_ref(&pair), true).is_ok(), "{t}?{}={}", pair.0, pair.1);
                }
            }
        }
    }
}
