//! The search parameters smart-edge indexes, by resource type, with their R4 names
//! (<https://hl7.org/fhir/R4/searchparameter-registry.html>), and the Patient compartment
//! (<https://hl7.org/fhir/R4/compartmentdefinition-patient.html>): which elements tie a
//! resource to a patient.

/// How a parameter's values are indexed and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    String,
    Date,
    Reference,
    Quantity,
}

/// One search parameter: its name, kind and the element paths (dot-separated, arrays walked
/// through; `value[x]`-style choices listed one by one).
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub paths: &'static [&'static str],
}

const fn p(name: &'static str, kind: Kind, paths: &'static [&'static str]) -> Param {
    Param { name, kind, paths }
}

use Kind::{Date, Quantity, Reference, String as Str, Token};

/// Parameters every type has.
pub const COMMON: &[Param] = &[p("_id", Token, &["id"]), p("_lastUpdated", Date, &["meta.lastUpdated"])];

/// The resource types served, with their parameters. `patient` is the compartment link where
/// the type has one.
pub const TYPES: &[(&str, &[Param])] = &[
    (
        "Patient",
        &[
            p("name", Str, &["name.family", "name.given", "name.text"]),
            p("family", Str, &["name.family"]),
            p("given", Str, &["name.given"]),
            p("birthdate", Date, &["birthDate"]),
            p("gender", Token, &["gender"]),
            p("identifier", Token, &["identifier"]),
        ],
    ),
    (
        "Observation",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("code", Token, &["code"]),
            p("category", Token, &["category"]),
            p("date", Date, &["effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"]),
            p("status", Token, &["status"]),
            p("encounter", Reference, &["encounter"]),
            p("value-quantity", Quantity, &["valueQuantity"]),
            p("identifier", Token, &["identifier"]),
        ],
    ),
    (
        "Condition",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("code", Token, &["code"]),
            p("category", Token, &["category"]),
            p("clinical-status", Token, &["clinicalStatus"]),
            p("onset-date", Date, &["onsetDateTime", "onsetPeriod"]),
            p("encounter", Reference, &["encounter"]),
        ],
    ),
    (
        "Encounter",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("date", Date, &["period"]),
            p("class", Token, &["class"]),
            p("type", Token, &["type"]),
            p("status", Token, &["status"]),
        ],
    ),
    (
        "MedicationRequest",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("code", Token, &["medicationCodeableConcept"]),
            p("status", Token, &["status"]),
            p("intent", Token, &["intent"]),
            p("authoredon", Date, &["authoredOn"]),
            p("encounter", Reference, &["encounter"]),
        ],
    ),
    (
        "AllergyIntolerance",
        &[
            p("patient", Reference, &["patient"]),
            p("code", Token, &["code"]),
            p("clinical-status", Token, &["clinicalStatus"]),
            p("date", Date, &["recordedDate"]),
        ],
    ),
    (
        "Immunization",
        &[
            p("patient", Reference, &["patient"]),
            p("vaccine-code", Token, &["vaccineCode"]),
            p("date", Date, &["occurrenceDateTime"]),
            p("status", Token, &["status"]),
        ],
    ),
    (
        "Procedure",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("code", Token, &["code"]),
            p("date", Date, &["performedDateTime", "performedPeriod"]),
            p("status", Token, &["status"]),
            p("encounter", Reference, &["encounter"]),
        ],
    ),
    (
        "DiagnosticReport",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("code", Token, &["code"]),
            p("category", Token, &["category"]),
            p("date", Date, &["effectiveDateTime", "effectivePeriod"]),
            p("status", Token, &["status"]),
            p("encounter", Reference, &["encounter"]),
        ],
    ),
    (
        "CarePlan",
        &[
            p("patient", Reference, &["subject"]),
            p("subject", Reference, &["subject"]),
            p("category", Token, &["category"]),
            p("date", Date, &["period"]),
            p("status", Token, &["status"]),
        ],
    ),
    ("Goal", &[p("patient", Reference, &["subject"]), p("subject", Reference, &["subject"]), p("lifecycle-status", Token, &["lifecycleStatus"])]),
    ("Claim", &[p("patient", Reference, &["patient"]), p("created", Date, &["created"]), p("status", Token, &["status"]), p("use", Token, &["use"])]),
    ("ExplanationOfBenefit", &[p("patient", Reference, &["patient"]), p("created", Date, &["created"]), p("status", Token, &["status"])]),
    (
        "ImagingStudy",
        &[p("patient", Reference, &["subject"]), p("subject", Reference, &["subject"]), p("started", Date, &["started"]), p("status", Token, &["status"])],
    ),
    (
        "Practitioner",
        &[
            p("name", Str, &["name.family", "name.given", "name.text"]),
            p("family", Str, &["name.family"]),
            p("given", Str, &["name.given"]),
            p("identifier", Token, &["identifier"]),
        ],
    ),
    ("Organization", &[p("name", Str, &["name"]), p("identifier", Token, &["identifier"]), p("type", Token, &["type"])]),
    (
        "Location",
        &[
            p("name", Str, &["name"]),
            p("identifier", Token, &["identifier"]),
            p("address", Str, &["address.line", "address.city", "address.state", "address.postalCode"]),
        ],
    ),
];

/// The Patient compartment: for each type, the elements whose `Patient/…` reference puts a
/// resource in that patient's compartment (R4 CompartmentDefinition "patient").
pub const COMPARTMENT: &[(&str, &[&str])] = &[
    ("Observation", &["subject", "performer"]),
    ("Condition", &["subject", "asserter"]),
    ("Encounter", &["subject"]),
    ("MedicationRequest", &["subject"]),
    ("AllergyIntolerance", &["patient", "recorder", "asserter"]),
    ("Immunization", &["patient"]),
    ("Procedure", &["subject", "performer.actor"]),
    ("DiagnosticReport", &["subject"]),
    ("CarePlan", &["subject", "activity.detail.performer"]),
    ("Goal", &["subject"]),
    ("Claim", &["patient", "payee.party"]),
    ("ExplanationOfBenefit", &["patient", "payee.party"]),
    ("ImagingStudy", &["subject"]),
];

/// The parameters of `resource_type`, `None` for a type not served.
pub fn params_of(resource_type: &str) -> Option<&'static [Param]> {
    TYPES.iter().find(|(t, _)| *t == resource_type).map(|(_, p)| *p)
}

pub fn find(resource_type: &str, name: &str) -> Option<Param> {
    COMMON.iter().chain(params_of(resource_type)?.iter()).find(|p| p.name == name).copied()
}

pub fn is_served(resource_type: &str) -> bool {
    params_of(resource_type).is_some()
}

/// Whether the type has a Patient compartment (else it lives in a shared partition).
pub fn compartment_paths(resource_type: &str) -> Option<&'static [&'static str]> {
    COMPARTMENT.iter().find(|(t, _)| *t == resource_type).map(|(_, p)| *p)
}
