//! The discovery documents as served: what [`crate::features`] implements, plus what the
//! settings publish (SMART App Launch 2.2 §2.0.4 `associated_endpoints` and the User-access
//! Brand), and the one-brand User-access Brands Bundle
//! (<https://hl7.org/fhir/smart-app-launch/brands.html>).

use crate::settings::ServerSettings;
use serde_json::{json, Value};
use smart_protocol::datatypes::Identifier;
use smart_protocol::discovery::{OpenIdConfiguration, Published, SmartConfiguration};
use smart_protocol::ServerUrls;

/// `{fhirBase}/.well-known/smart-configuration`.
pub fn smart_configuration(urls: &ServerUrls, settings: &ServerSettings) -> SmartConfiguration {
    let brand = settings.user_access_brand.as_ref().map(|brand| (urls.user_access_brands(), brand_identifier(&brand.website)));
    SmartConfiguration::new(urls, &crate::features::current())
        .publishing(Published { associated_endpoints: settings.associated_endpoints.clone(), user_access_brand: brand })
}

/// `/.well-known/openid-configuration`.
pub fn openid_configuration(urls: &ServerUrls) -> OpenIdConfiguration {
    OpenIdConfiguration::new(urls, &crate::features::current())
}

/// The brand's identifier: its primary web presence as a URI (UserAccessBrand profile).
fn brand_identifier(website: &str) -> Identifier {
    Identifier { system: Some("urn:ietf:rfc:3986".to_owned()), value: Some(website.trim_end_matches('/').to_owned()), ..Identifier::default() }
}

/// The User-access Brands Bundle: a `collection` of one Organization (the brand: the server's
/// name, logo, website and portal) and the Endpoint of this server's FHIR API. `None` when no
/// brand is configured.
pub fn user_access_brands(urls: &ServerUrls, settings: &ServerSettings, timestamp: &str) -> Option<Value> {
    let brand = settings.user_access_brand.as_ref()?;
    let identifier = brand_identifier(&brand.website);
    let issuer = urls.issuer();
    let endpoint_url = format!("{issuer}/Endpoint/fhir");
    let organization_url = format!("{issuer}/Organization/brand");
    let organization = json!({
        "resourceType": "Organization",
        "id": "brand",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/organization-brand",
                "extension": [{"url": "brandLogo", "valueUrl": brand.logo_uri}]
            },
            {
                "url": "http://hl7.org/fhir/StructureDefinition/organization-portal",
                "extension": [
                    {"url": "portalName", "valueString": format!("{} portal", settings.server_name)},
                    {"url": "portalUrl", "valueUrl": brand.portal_url},
                    {"url": "portalEndpoint", "valueReference": {"reference": "Endpoint/fhir"}}
                ]
            }
        ],
        "identifier": [identifier],
        "active": true,
        "name": settings.server_name,
        "telecom": [{"system": "url", "value": brand.website}],
        "endpoint": [{"reference": "Endpoint/fhir"}]
    });
    let endpoint = json!({
        "resourceType": "Endpoint",
        "id": "fhir",
        "status": "active",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "hl7-fhir-rest"},
        "name": format!("{} FHIR R4 API", settings.server_name),
        "payloadType": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "none"}]}],
        "address": urls.fhir_base(),
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/endpoint-fhir-version", "valueCode": "4.0.1"}]
    });
    Some(json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timestamp,
        "entry": [
            {"fullUrl": organization_url, "resource": organization},
            {"fullUrl": endpoint_url, "resource": endpoint}
        ]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::UserAccessBrand;
    use smart_protocol::discovery::AssociatedEndpoint;

    fn urls() -> ServerUrls {
        ServerUrls::new("https://ehr.example.org", "/fhir").unwrap()
    }

    #[test]
    fn nothing_is_published_unless_configured() {
        let doc = serde_json::to_value(smart_configuration(&urls(), &ServerSettings::default())).unwrap();
        assert!(doc.get("associated_endpoints").is_none());
        assert!(doc.get("user_access_brand_bundle").is_none());
        assert!(doc.get("user_access_brand_identifier").is_none());
        assert_eq!(doc["registration_endpoint"], "https://ehr.example.org/auth/register");
        assert_eq!(user_access_brands(&urls(), &ServerSettings::default(), "2026-01-01T00:00:00Z"), None);
    }

    #[test]
    fn the_brand_bundle_names_the_brand_the_configuration_identifies() {
        let settings = ServerSettings {
            server_name: "Example Health".into(),
            associated_endpoints: vec![AssociatedEndpoint { url: "https://other.example/fhir".into(), capabilities: vec!["launch-ehr".into()] }],
            user_access_brand: Some(UserAccessBrand {
                website: "https://example-health.org".into(),
                logo_uri: "https://example-health.org/logo.svg".into(),
                portal_url: "https://portal.example-health.org".into(),
            }),
            ..ServerSettings::default()
        };
        let doc = serde_json::to_value(smart_configuration(&urls(), &settings)).unwrap();
        assert_eq!(doc["associated_endpoints"][0]["url"], "https://other.example/fhir");
        assert_eq!(doc["user_access_brand_bundle"], "https://ehr.example.org/user-access-brands.json");
        let bundle = user_access_brands(&urls(), &settings, "2026-01-01T00:00:00Z").unwrap();
        let organization = &bundle["entry"][0]["resource"];
        assert_eq!(organization["identifier"][0], doc["user_access_brand_identifier"]);
        assert_eq!(organization["name"], "Example Health");
        assert_eq!(organization["extension"][0]["extension"][0]["valueUrl"], "https://example-health.org/logo.svg");
        assert_eq!(organization["extension"][1]["extension"][1]["valueUrl"], "https://portal.example-health.org");
        assert_eq!(bundle["entry"][1]["resource"]["address"], "https://ehr.example.org/fhir");
    }
}
