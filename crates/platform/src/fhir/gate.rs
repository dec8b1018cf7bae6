//! The one authorization gate of the FHIR API (SMART App Launch 2.2 §3, "Scopes for requesting
//! FHIR resources", <https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>).
//!
//! Every interaction — read, vread, history, search, `_include`/`_revinclude`, create, update,
//! conditional create, delete, and each entry of a batch or transaction — asks [`decide`] with
//! the grant, the permission, the resource type and the [`Place`] the resource lives in (or
//! would live in). The rules:
//!
//! - Each resource scope is judged on its own; an operation is allowed when one scope allows it
//!   entirely (permission, reach and constraints). Scopes of different contexts never pool.
//! - Reach: `patient/` scopes reach the launch patient's compartment (and need a launch
//!   patient); `user/` scopes reach what the user may see — every compartment for a
//!   practitioner, their own for a patient user, none for anyone else; `system/` scopes reach
//!   everything. A patient user's `patient/` scopes reach nothing when the launch names
//!   another patient.
//! - Shared resources (outside every compartment) are readable under any usable scope of the
//!   type; only `system/` scopes and a practitioner's `user/` scopes change them.
//! - Fail closed: a constraint that cannot be enforced on the type makes its scope grant
//!   nothing there (see [`super::access::scope_filter`]).

use super::access::scope_filter;
use super::search::{self, Clause};
use crate::guard::AccessGrant;
use serde_json::Value;
use smart_protocol::scopes::{Permissions, ResourceScope, ScopeContext};
use std::collections::BTreeSet;

/// Where a resource lives (or would live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// The compartment of this patient.
    Compartment(&'a str),
    /// Outside every patient compartment.
    Shared,
}

impl<'a> Place<'a> {
    /// The place of a partition name (`patient/{id}`, `shared/{type}`).
    pub fn of_partition(partition: &'a str) -> Place<'a> {
        match partition.strip_prefix("patient/") {
            Some(patient) => Place::Compartment(patient),
            None => Place::Shared,
        }
    }
}

/// Which compartments a scope reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    All,
    /// These patients' compartments (empty: none).
    Patients(BTreeSet<String>),
}

impl Reach {
    fn none() -> Reach {
        Reach::Patients(BTreeSet::new())
    }

    fn one(patient: &str) -> Reach {
        Reach::Patients(BTreeSet::from([patient.to_owned()]))
    }

    pub fn includes(&self, patient: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Patients(set) => set.contains(patient),
        }
    }

    fn union(self, other: Reach) -> Reach {
        match (self, other) {
            (Reach::All, _) | (_, Reach::All) => Reach::All,
            (Reach::Patients(mut a), Reach::Patients(b)) => {
                a.extend(b);
                Reach::Patients(a)
            }
        }
    }
}

/// What a caller may see of the resources at one place: everything, or those matching one of
/// the clause groups (the constraints of each scope that reaches the place).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    AnyOf(Vec<Vec<Clause>>),
}

impl Filter {
    /// Whether `resource` passes the filter.
    pub fn admits(&self, resource: &Value) -> bool {
        match self {
            Filter::All => true,
            Filter::AnyOf(groups) => {
                let rows = search::index(resource);
                groups.iter().any(|group| search::matches(&rows, group))
            }
        }
    }

    /// The groups for a search's `filters` (empty = no filter).
    pub fn groups(&self) -> Vec<Vec<Clause>> {
        match self {
            Filter::All => Vec::new(),
            Filter::AnyOf(groups) => groups.clone(),
        }
    }

    fn add(self, constraint: Option<Vec<Clause>>) -> Filter {
        match (self, constraint) {
            (Filter::All, _) | (_, None) => Filter::All,
            (Filter::AnyOf(mut groups), Some(group)) => {
                if !groups.contains(&group) {
                    groups.push(group);
                }
                Filter::AnyOf(groups)
            }
        }
    }
}

/// Why the gate refused at the level of the type (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the token's scopes do not allow this on {0}")]
    InsufficientScope(String),
    #[error("patient/ scopes need a patient in the launch context")]
    NoPatientContext,
}

/// A scope the grant holds that can act on a type, with what its constraints mean there.
#[derive(Debug, Clone)]
pub struct Usable<'g> {
    pub scope: &'g ResourceScope,
    pub constraint: Option<Vec<Clause>>,
    pub reach: Reach,
    /// The type is patient data (Patient or a compartment type).
    patient_data: bool,
}

impl Usable<'_> {
    /// Whether this scope may act at `place` with `permission`.
    fn reaches(&self, place: Place<'_>, permission: Permissions, grant: &AccessGrant) -> bool {
        match place {
            Place::Compartment(patient) => self.reach.includes(patient),
            // Patient data that names no patient is nobody's reference data: only the scopes
            // that reach every compartment see or change it.
            Place::Shared if self.patient_data => self.reach == Reach::All,
            Place::Shared if is_write(permission) => match self.scope.context {
                ScopeContext::System => true,
                ScopeContext::User => is_practitioner(grant),
                ScopeContext::Patient => false,
            },
            Place::Shared => true,
        }
    }
}

fn is_write(permission: Permissions) -> bool {
    !permission.intersection(Permissions::V1_WRITE).is_empty()
}

fn is_practitioner(grant: &AccessGrant) -> bool {
    grant.fhir_user.as_deref().is_some_and(|u| u.starts_with("Practitioner/") || u.starts_with("PractitionerRole/"))
}

fn patient_user(grant: &AccessGrant) -> Option<&str> {
    grant.fhir_user.as_deref().and_then(|u| u.strip_prefix("Patient/"))
}

/// The compartments `scope` reaches for this grant; `None` when it is not usable at all
/// (a `patient/` scope without a launch patient).
fn reach_of(grant: &AccessGrant, scope: &ResourceScope) -> Option<Reach> {
    match scope.context {
        ScopeContext::System => Some(Reach::All),
        ScopeContext::User if is_practitioner(grant) => Some(Reach::All),
        ScopeContext::User => Some(patient_user(grant).map_or_else(Reach::none, Reach::one)),
        ScopeContext::Patient => {
            let launch = grant.patient.as_deref()?;
            // A patient user reaches only their own compartment; a RelatedPerson or Person
            // user none (whose record they may see is not known here).
            let bound = match grant.fhir_user.as_deref() {
                None => true,
                Some(_) if is_practitioner(grant) => true,
                Some(_) => patient_user(grant) == Some(launch),
            };
            Some(if bound { Reach::one(launch) } else { Reach::none() })
        }
    }
}

/// The scopes usable for `permission` on `resource_type`, or why there is none (403).
pub fn usable<'g>(grant: &'g AccessGrant, resource_type: &str, permission: Permissions) -> Result<Vec<Usable<'g>>, Denied> {
    let mut usable = Vec::new();
    let mut missing_patient = false;
    let patient_data = super::params::is_patient_data(resource_type);
    for scope in grant.scope.resource_scopes().filter(|s| s.allows(resource_type, permission)) {
        let Ok(constraint) = scope_filter(scope, resource_type) else { continue };
        match reach_of(grant, scope) {
            Some(reach) => usable.push(Usable { scope, constraint, reach, patient_data }),
            None => missing_patient = true,
        }
    }
    match (usable.is_empty(), missing_patient) {
        (false, _) => Ok(usable),
        (true, true) => Err(Denied::NoPatientContext),
        (true, false) => Err(Denied::InsufficientScope(resource_type.to_owned())),
    }
}

/// The gate: may `grant` do `permission` on `resource_type` at `place`? `Err` when no scope
/// can act on the type at all (403); `Ok(None)` when none reaches this place; otherwise the
/// filter the resources there must pass.
pub fn decide(grant: &AccessGrant, resource_type: &str, permission: Permissions, place: Place<'_>) -> Result<Option<Filter>, Denied> {
    let usable = usable(grant, resource_type, permission)?;
    Ok(at(&usable, grant, permission, place))
}

/// [`decide`] for scopes already found usable.
pub fn at(usable: &[Usable<'_>], grant: &AccessGrant, permission: Permissions, place: Place<'_>) -> Option<Filter> {
    let mut reaching = usable.iter().filter(|u| u.reaches(place, permission, grant)).peekable();
    reaching.peek()?;
    Some(reaching.fold(Filter::AnyOf(Vec::new()), |filter, u| filter.add(u.constraint.clone())))
}

/// Every compartment some usable scope reaches.
pub fn reach(usable: &[Usable<'_>]) -> Reach {
    usable.iter().fold(Reach::none(), |all, u| all.union(u.reach.clone()))
}

/// Whether one scope allows a whole change at `place`: the content before and the content
/// after both pass its constraints (two scopes' filters never combine into one change).
pub fn allows_change(grant: &AccessGrant, resource_type: &str, permission: Permissions, place: Place<'_>, before: &Value, after: &Value) -> bool {
    let Ok(usable) = usable(grant, resource_type, permission) else { return false };
    let (rows_before, rows_after) = (search::index(before), search::index(after));
    usable.iter().filter(|u| u.reaches(place, permission, grant)).any(|u| match &u.constraint {
        None => true,
        Some(group) => search::matches(&rows_before, group) && search::matches(&rows_after, group),
    })
}

/// Whether a write allowed by `filter` at a place may store (or remove) `resource`.
pub fn admits(filter: Option<&Filter>, resource: &Value) -> bool {
    filter.is_some_and(|f| f.admits(resource))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(scope: &str, patient: Option<&str>, fhir_user: Option<&str>) -> AccessGrant {
        AccessGrant::for_tests(scope, patient, fhir_user)
    }

    const R: Permissions = Permissions::READ;
    const C: Permissions = Permissions::CREATE;

    fn obs(category: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/a"}, "category": [{"coding": [{"code": category}]}]})
    }

    #[test]
    fn patient_scopes_reach_the_launch_patient_only_and_need_one() {
        let g = grant("patient/*.cruds", Some("a"), Some("Practitioner/d"));
        assert_eq!(decide(&g, "Observation", R, Place::Compartment("a")), Ok(Some(Filter::All)));
        assert_eq!(decide(&g, "Observation", R, Place::Compartment("b")), Ok(None));
        assert_eq!(decide(&g, "Practitioner", R, Place::Shared), Ok(Some(Filter::All)), "shared reference data is readable");
        assert_eq!(decide(&g, "Practitioner", C, Place::Shared), Ok(None), "but a patient/ scope never writes it");
        assert_eq!(decide(&grant("patient/*.rs", None, None), "Observation", R, Place::Compartment("a")), Err(Denied::NoPatientContext));
        assert_eq!(
            decide(&grant("patient/*.rs", Some("b"), Some("Patient/a")), "Observation", R, Place::Compartment("b")),
            Ok(None),
            "a patient user never reaches another patient"
        );
    }

    #[test]
    fn user_scopes_follow_the_user() {
        let doctor = grant("user/*.cruds", None, Some("Practitioner/d"));
        assert_eq!(decide(&doctor, "Observation", R, Place::Compartment("z")), Ok(Some(Filter::All)));
        assert_eq!(decide(&doctor, "Organization", C, Place::Shared), Ok(Some(Filter::All)));
        let patient = grant("user/*.cruds", None, Some("Patient/a"));
        assert_eq!(decide(&patient, "Observation", R, Place::Compartment("a")), Ok(Some(Filter::All)));
        assert_eq!(decide(&patient, "Observation", R, Place::Compartment("b")), Ok(None));
        assert_eq!(decide(&patient, "Organization", C, Place::Shared), Ok(None));
        assert_eq!(
            decide(&grant("patient/*.rs", Some("a"), Some("RelatedPerson/r")), "Observation", R, Place::Compartment("a")),
            Ok(None),
            "a relative's launch is not trusted"
        );
        assert_eq!(
            decide(&grant("patient/*.rs", Some("a"), None), "Observation", R, Place::Compartment("a")),
            Ok(Some(Filter::All)),
            "an app without fhirUser"
        );
        assert_eq!(decide(&grant("patient/*.rs", Some("a"), None), "Observation", R, Place::Shared), Ok(None), "patient data naming no patient");
        assert_eq!(decide(&doctor, "Observation", R, Place::Shared), Ok(Some(Filter::All)));
        let related = grant("user/*.rs", None, Some("RelatedPerson/r"));
        assert_eq!(decide(&related, "Observation", R, Place::Compartment("a")), Ok(None));
        assert_eq!(decide(&related, "Organization", R, Place::Shared), Ok(Some(Filter::All)));
    }

    #[test]
    fn scopes_do_not_pool_their_contexts_and_filters() {
        let g = grant("patient/Observation.rs user/Observation.rs?category=vital-signs", Some("a"), Some("Practitioner/d"));
        assert_eq!(decide(&g, "Observation", R, Place::Compartment("a")), Ok(Some(Filter::All)));
        let Ok(Some(other)) = decide(&g, "Observation", R, Place::Compartment("b")) else { panic!() };
        assert!(other.admits(&obs("vital-signs")));
        assert!(!other.admits(&obs("laboratory")));
    }

    #[test]
    fn unenforceable_constraints_grant_nothing() {
        let g = grant("patient/Observation.rs?category=laboratory&foo=bar", Some("a"), None);
        assert_eq!(decide(&g, "Observation", R, Place::Compartment("a")), Err(Denied::InsufficientScope("Observation".into())));
        let star = grant("patient/*.rs?category=laboratory", Some("a"), None);
        assert!(decide(&star, "Patient", R, Place::Compartment("a")).is_err());
        let Ok(Some(f)) = decide(&star, "Observation", R, Place::Compartment("a")) else { panic!() };
        assert!(f.admits(&obs("laboratory")) && !f.admits(&obs("survey")));
    }

    #[test]
    fn system_scopes_reach_everything() {
        let g = grant("system/*.cruds", None, None);
        assert_eq!(decide(&g, "Observation", C, Place::Compartment("q")), Ok(Some(Filter::All)));
        assert_eq!(decide(&g, "Practitioner", C, Place::Shared), Ok(Some(Filter::All)));
        assert_eq!(reach(&usable(&g, "Observation", R).unwrap()), Reach::All);
    }
}
