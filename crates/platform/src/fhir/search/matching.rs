//! The in-memory twin of the SQL conditions.

use super::index::IndexEntry;
use super::query::{Clause, Prefix};
use super::sql::quantity_bounds;

/// Whether a resource's index rows satisfy every clause: the in-memory twin of
/// [`to_sql`](super::to_sql)'s conditions (reads under granular scopes, where no SQL runs, and
/// the in-memory store).
pub fn matches(rows: &[IndexEntry], clauses: &[Clause]) -> bool {
    clauses.iter().all(|clause| holds(rows, clause))
}

fn holds(rows: &[IndexEntry], clause: &Clause) -> bool {
    match clause {
        Clause::Missing { name, missing } => rows.iter().any(|r| &r.name == name) != *missing,
        Clause::Not(inner) => !holds(rows, inner),
        Clause::AnyOf(clauses) => clauses.iter().any(|c| holds(rows, c)),
        _ => rows.iter().any(|r| row_matches(r, clause)),
    }
}

fn row_matches(r: &IndexEntry, clause: &Clause) -> bool {
    if clause.name().is_some_and(|name| r.name != name) {
        return false;
    }
    let code = r.code.as_deref();
    match clause {
        Clause::Token { any_of, .. } => any_of.iter().any(|(sys, want)| {
            let sys_ok = match sys.as_deref() {
                None => true,
                Some("") => r.sys.is_none() && code.is_some(),
                Some(s) => r.sys.as_deref() == Some(s),
            };
            sys_ok && want.as_deref().is_none_or(|c| code == Some(c))
        }),
        Clause::Reference { any_of, .. } => r.reference.as_ref().is_some_and(|x| any_of.contains(x)),
        Clause::Text { any_of, exact, .. } => r.text.as_deref().is_some_and(|t| any_of.iter().any(|v| if *exact { t == v } else { t.starts_with(v.as_str()) })),
        Clause::Contains { any_of, .. } => r.text.as_deref().is_some_and(|t| any_of.iter().any(|v| t.contains(v.as_str()))),
        Clause::Exact { any_of, .. } => code.is_some_and(|c| any_of.iter().any(|v| c == v)),
        Clause::Below { any_of, .. } => {
            code.is_some_and(|c| any_of.iter().any(|v| c == v || c.strip_prefix(v.as_str()).is_some_and(|rest| rest.starts_with('/'))))
        }
        Clause::Date { prefix, lo, hi, .. } => {
            let (Some(rlo), Some(rhi)) = (r.date_lo.as_deref(), r.date_hi.as_deref()) else { return false };
            let (lo, hi) = (lo.as_str(), hi.as_str());
            match prefix {
                Prefix::Eq => rlo >= lo && rhi <= hi,
                Prefix::Ne => !(rlo >= lo && rhi <= hi),
                Prefix::Lt => rlo < lo,
                Prefix::Le => rlo < hi,
                Prefix::Gt => rhi > hi,
                Prefix::Ge => rhi > lo,
                Prefix::Sa => rlo >= hi,
                Prefix::Eb => rhi <= lo,
                Prefix::Ap => rhi > lo && rlo < hi,
            }
        }
        Clause::Quantity { prefix, value, sys, code: want, .. } => {
            let Some(num) = r.num else { return false };
            let (_, bounds) = quantity_bounds(*prefix, *value);
            let compared = match prefix {
                Prefix::Eq => num == bounds[0],
                Prefix::Ne => num != bounds[0],
                Prefix::Lt | Prefix::Eb => num < bounds[0],
                Prefix::Le => num <= bounds[0],
                Prefix::Gt | Prefix::Sa => num > bounds[0],
                Prefix::Ge => num >= bounds[0],
                Prefix::Ap => num >= bounds[0] && num <= bounds[1],
            };
            compared && sys.as_ref().is_none_or(|s| r.sys.as_ref() == Some(s)) && want.as_deref().is_none_or(|c| code == Some(c))
        }
        Clause::Missing { .. } | Clause::Not(_) | Clause::AnyOf(_) => false,
    }
}
