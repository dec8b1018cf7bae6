//! FHIR search (R4 §3.1.1, <https://hl7.org/fhir/R4/search.html>), in the seams it has: the
//! index rows a resource contributes ([`index`]), the parsing of a query ([`query`]), the
//! partition it runs in ([`placement`]), ordering and paging ([`paging`]), the SQL that runs it
//! inside one partition ([`sql`]) and its in-memory twin ([`matching`]).

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
