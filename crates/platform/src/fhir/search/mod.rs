//! FHIR search (R4 §3.1.1, <https://hl7.org/fhir/R4/search.html>), in the seams it has: the
//! index rows a resource contributes ([`index`]), the parsing of a query ([`query`]), the
//! partition it runs in ([`placement`]), ordering and paging ([`paging`]), the SQL that runs it
//! inside one partition ([`sql`]) and its in-memory twin ([`matching`]).
//!
//! The rules this server picks where R4 leaves room:
//! - `ap` on a date widens the value's range on both sides by 10% of its distance from now
//!   (§3.1.1.4.2), "now" being the token's issue time; on a number, ±10% of the value.
//! - `eq` on a date: the value's range contains the resource's; `sa`/`eb`: the resource's
//!   range starts at or after the value's end / ends at or before its start.
//! - `:text` on a token matches, from the start and case-insensitively, Coding.display,
//!   CodeableConcept.text or Identifier.type.text; `:exact` on a string compares the value as
//!   written; `:contains` anywhere, case-insensitively; `:not` holds for a resource with no
//!   value at all; `:missing` works on every kind. `:above`/`:below` work on uris (by path);
//!   on tokens (no terminology), references and dates they are refused (400).
//! - Chains (`subject:Patient.name=x`) and `_has` go one level deep, at most two per search,
//!   and are resolved by the use case ([`crate::fhir::api`]) with a search of the caller's own
//!   through the gate: at most 40 resources each (else 400 too-costly). A [`Search`] whose
//!   chains were not resolved matches nothing.
//! - `_summary`/`_elements` subset the matches (not the included resources) and tag them
//!   SUBSETTED; `_total=none` runs no count query; `_sort` takes up to three keys, strings by
//!   their lower-cased text, tokens by code, dates by their earliest instant (a resource
//!   without a value first when ascending).

pub mod index;
pub mod matching;
pub mod paging;
pub mod placement;
pub mod query;
pub mod sql;

pub use index::*;
pub use matching::*;
pub use paging::*;
pub use placement::*;
pub use query::*;
pub use sql::*;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_modifiers;
