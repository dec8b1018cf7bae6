//! The in-memory twin of the SQL conditions.

use super::index::IndexEntry;
use super::query::{Clause, Prefix};

/// Whether a resource's index rows satisfy every clause: the in-memory twin of [`to_sql`]'s
/// conditions (reads under granular scopes, where no SQL runs, and the in-memory store).
pub fn matches(rows: &[IndexEntry], clauses: &[Clause]) -> bool {
    clauses.iter().all(|clause| rows.iter().any(|r| row_matches(r, clause)))
}

fn row_matches(r: &IndexEntry, clause: &Clause) -> bool {
    let named = |name: &str| r.name == name;
    match clause {
        Clause::Token { name, any_of } => {
            named(name)
                && any_of.iter().any(|(sys, code)| {
                    let sys_ok = match sys.as_deref() {
                        None => true,
                        Some("") => r.sys.is_none(),
                        Some(s) => r.sys.as_deref() == Some(s),
                    };
                    sys_ok && code.as_ref().is_none_or(|c| r.code.as_ref() == Some(c))
                })
        }
        Clause::Reference { name, any_of } => named(name) && r.reference.as_ref().is_some_and(|x| any_of.contains(x)),
        Clause::Text { name, any_of, exact } => {
            named(name) && r.text.as_deref().is_some_and(|t| any_of.iter().any(|v| if *exact { t == v } else { t.starts_with(v.as_str()) }))
        }
        Clause::Date { name, prefix, lo, hi } => {
            let (Some(rlo), Some(rhi)) = (r.date_lo.as_deref(), r.date_hi.as_deref()) else { return false };
            named(name)
                && match prefix {
                    Prefix::Eq => rlo >= lo.as_str() && rhi <= hi.as_str(),
                    Prefix::Ne => !(rlo >= lo.as_str() && rhi <= hi.as_str()),
                    Prefix::Lt => rlo < lo.as_str(),
                    Prefix::Ge => rhi > lo.as_str(),
                    Prefix::Le => rlo < hi.as_str(),
                    Prefix::Gt => rhi > hi.as_str(),
                }
        }
        Clause::Quantity { name, prefix, value, sys, code } => {
            let Some(num) = r.num else { return false };
            let compared = match prefix {
                Prefix::Eq => num == *value,
                Prefix::Ne => num != *value,
                Prefix::Lt => num < *value,
                Prefix::Le => num <= *value,
                Prefix::Gt => num > *value,
                Prefix::Ge => num >= *value,
            };
            named(name) && compared && sys.as_ref().is_none_or(|s| r.sys.as_ref() == Some(s)) && code.as_ref().is_none_or(|c| r.code.as_ref() == Some(c))
        }
    }
}
