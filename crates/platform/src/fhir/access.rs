//! Granular scope constraints (SMART App Launch 2.2 §3.5, "Finer-grained resource
//! constraints using search parameters"): what `patient/Observation.rs?category=laboratory`
//! means for a type, and whether the server can enforce it at all. The gate
//! ([`super::gate`]) applies them; authorization and token requests refuse the scopes they
//! cannot enforce.

use super::search::{self, Clause};
use smart_protocol::scopes::ResourceScope;

/// A granular scope query the server cannot enforce on a type (SMART 2.2 §3.5: a server
/// that cannot enforce a constraint must not grant the scope as if it could).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the scope constraint {0} cannot be enforced on {1}")]
pub struct Unenforceable(pub String, pub String);

/// What a scope's query constraints mean for `resource_type`: `Ok(None)` without constraints,
/// `Ok(Some(clauses))` (all must match) with them. Every `name=value` must be a search
/// parameter of the type without a modifier or a control parameter (`_count`, `_sort`…):
/// anything else is [`Unenforceable`], and the scope grants nothing on that type.
pub fn scope_filter(scope: &ResourceScope, resource_type: &str) -> Result<Option<Vec<Clause>>, Unenforceable> {
    if scope.query.is_empty() {
        return Ok(None);
    }
    let refuse = || Unenforceable(scope.query.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&"), resource_type.to_owned());
    // The constraint is written URL-encoded inside the scope (`%7C` for `|`).
    let pairs: Vec<(String, String)> =
        scope.query.iter().flat_map(|(n, v)| url::form_urlencoded::parse(format!("{n}={v}").as_bytes()).into_owned().collect::<Vec<_>>()).collect();
    if pairs.iter().any(|(n, _)| n.contains(':')) {
        return Err(refuse());
    }
    match search::parse(resource_type, &pairs, true) {
        // One clause per constraint: nothing was swallowed as a control parameter.
        Ok(q) if q.clauses.len() == pairs.len() && q.ignored.is_empty() => Ok(Some(q.clauses)),
        _ => Err(refuse()),
    }
}

/// Whether the server can enforce `scope` anywhere: on its type, or for `*` on at least one
/// served type. Authorization and token requests refuse other scopes with `invalid_scope`.
pub fn enforceable(scope: &ResourceScope) -> bool {
    match &scope.resource {
        Some(t) => super::params::is_served(t) && scope_filter(scope, t).is_ok(),
        None => scope.query.is_empty() || super::params::TYPES.iter().any(|(t, _)| scope_filter(scope, t).is_ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_constraints_that_cannot_be_enforced_are_refused() {
        let scope = |s: &str| smart_protocol::scopes::Scope::parse(s).unwrap().as_resource().unwrap().clone();
        assert!(enforceable(&scope("patient/Observation.rs?category=laboratory")));
        assert!(enforceable(&scope("patient/Observation.rs?code=http://loinc.org%7C4548-4")));
        assert!(enforceable(&scope("patient/*.rs?category=laboratory")), "Observation and Condition have category");
        assert!(!enforceable(&scope("patient/Observation.rs?category=laboratory&foo=bar")));
        assert!(!enforceable(&scope("patient/Observation.rs?_count=5")));
        assert!(!enforceable(&scope("patient/Observation.rs?code:text=x")));
        assert!(!enforceable(&scope("patient/*.rs?foo=bar")));
        assert!(!enforceable(&scope("patient/Spaceship.rs")));
        let star = scope("patient/*.rs?category=laboratory");
        assert!(scope_filter(&star, "Observation").is_ok());
        assert!(scope_filter(&star, "Patient").is_err(), "Patient has no category: the scope grants nothing there");
        assert_eq!(scope_filter(&scope("patient/Observation.rs"), "Observation"), Ok(None));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any scope text: parsed or refused, and a parsed one is judged without a panic.
        #[test]
        fn arbitrary_scope_constraints_are_judged_without_panics(query in "\\PC{0,40}", t in "[A-Z][a-z]{0,12}|\\*") {
            if let Ok(smart_protocol::scopes::Scope::Resource(scope)) = smart_protocol::scopes::Scope::parse(&format!("patient/{t}.rs?{query}")) {
                let _ = enforceable(&scope);
                let _ = scope_filter(&scope, "Observation");
            }
        }
    }
}
