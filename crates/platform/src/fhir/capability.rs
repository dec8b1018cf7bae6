//! The server's CapabilityStatement (`GET [base]/metadata`, R4 §3.1.0.13,
//! <https://hl7.org/fhir/R4/capabilitystatement.html>), with the SMART security service and
//! the `oauth-uris` extension (SMART App Launch 2.2 §2.0.4.1, "FHIR CapabilityStatement").

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

/// Each served type with exactly the interactions and search parameters implemented.
fn resources() -> Vec<Value> {
    use super::params::{COMMON, TYPES};
    TYPES
        .iter()
        .map(|(resource_type, params)| {
            let search_params: Vec<Value> = COMMON
                .iter()
                .chain(params.iter())
                .map(|p| json!({ "name": p.name, "definition": p.definition(resource_type), "type": p.kind.code() }))
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
                "interaction": interactions,
                "searchParam": search_params
            });
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
    }
}
