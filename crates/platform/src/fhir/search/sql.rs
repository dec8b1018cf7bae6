//! The SQL that runs a search inside one partition's SQLite database. Values are bound, never
//! spliced into the SQL.

use super::paging::sort_column;
use super::query::{Clause, Prefix, Search, Total};
use serde::{Deserialize, Serialize};

/// A bound SQL value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlValue {
    Text(String),
    Real(f64),
    Int(i64),
}

/// SQL for one partition: the page of resources and the total count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlQuery {
    /// The page size and offset the select is bound with: a short page tells the total
    /// without running `count`.
    pub page_size: usize,
    pub offset: usize,
    pub select: String,
    pub select_params: Vec<SqlValue>,
    pub count: String,
    pub count_params: Vec<SqlValue>,
}

/// The condition on one `idx` row `i` of a date clause, with its bound values: the
/// resource's `[date_lo, date_hi)` against the value's `[lo, hi)` (R4 §3.1.1.4.2, as ranges).
fn date_sql<'a>(prefix: Prefix, lo: &'a str, hi: &'a str) -> (&'static str, Vec<&'a str>) {
    match prefix {
        // The value's range contains the resource's.
        Prefix::Eq => ("(i.date_lo >= ? AND i.date_hi <= ?)", vec![lo, hi]),
        Prefix::Ne => ("NOT (i.date_lo >= ? AND i.date_hi <= ?)", vec![lo, hi]),
        // The resource's range reaches below / above the value's.
        Prefix::Lt => ("i.date_lo < ?", vec![lo]),
        Prefix::Le => ("i.date_lo < ?", vec![hi]),
        Prefix::Gt => ("i.date_hi > ?", vec![hi]),
        Prefix::Ge => ("i.date_hi > ?", vec![lo]),
        // Starts after the value ends; ends before the value starts.
        Prefix::Sa => ("i.date_lo >= ?", vec![hi]),
        Prefix::Eb => ("i.date_hi <= ?", vec![lo]),
        // Overlaps the (widened) range.
        Prefix::Ap => ("(i.date_hi > ? AND i.date_lo < ?)", vec![lo, hi]),
    }
}

/// The comparison of a quantity clause: SQL and the bounds it binds.
pub(super) fn quantity_bounds(prefix: Prefix, value: f64) -> (&'static str, Vec<f64>) {
    match prefix {
        Prefix::Eq => ("i.num = ?", vec![value]),
        Prefix::Ne => ("i.num <> ?", vec![value]),
        Prefix::Lt | Prefix::Eb => ("i.num < ?", vec![value]),
        Prefix::Le => ("i.num <= ?", vec![value]),
        Prefix::Gt | Prefix::Sa => ("i.num > ?", vec![value]),
        Prefix::Ge => ("i.num >= ?", vec![value]),
        // Within 10% of the value (R4 §3.1.1.4.2).
        Prefix::Ap => {
            let d = (value * 0.1).abs();
            ("i.num BETWEEN ? AND ?", vec![value - d, value + d])
        }
    }
}

/// The row `r` has an index row of parameter `name` satisfying `inner`.
///
/// Written as `r.id IN (…)` over the parameter's index rows (`?1` is the resource type, the
/// query's first bound value), not as a correlated `EXISTS`: SQLite runs the `IN` list once
/// through `idx_token` / `idx_ref` / `idx_date` and then reads the matching rows by key, where
/// the `EXISTS` made it scan every resource of the type and probe the index for each (1.1 ms
/// against 0.03 ms for a 4-match code search among 1,200 Observations; BENCHMARKS.md).
fn exists(name: &str, inner: &str) -> String {
    // Parameter names come from the static registry, never from the request.
    format!("r.id IN (SELECT i.id FROM idx i WHERE i.type = ?1 AND i.name = '{}' AND ({inner}))", name.replace('\'', ""))
}

/// How many values `sql` binds: one per plain `?`, and the first (`?1`, used as often as
/// needed).
#[cfg(test)]
pub fn bound_slots(sql: &str) -> usize {
    let first = sql.matches("?1").count();
    // A plain `?` before the first `?1` would take number 1 and shift every value after it.
    assert!(first == 0 || sql.find('?') == sql.find("?1"), "a `?` before `?1`: {sql}");
    sql.matches('?').count() - first + usize::from(first > 0)
}

/// `(a OR b ...)`, or a false condition for an empty list.
fn any(ors: Vec<String>) -> String {
    if ors.is_empty() {
        "0".to_owned()
    } else {
        ors.join(" OR ")
    }
}

/// The SQL condition of one clause (against the row `r`), binding its values.
fn clause_sql(clause: &Clause, params: &mut Vec<SqlValue>) -> String {
    let text = |params: &mut Vec<SqlValue>, v: &str| params.push(SqlValue::Text(v.to_owned()));
    match clause {
        Clause::Token { name, any_of } => {
            let mut ors = Vec::new();
            for (sys, code) in any_of {
                let mut parts = Vec::new();
                match sys.as_deref() {
                    None => {}
                    Some("") => parts.push("(i.sys IS NULL AND i.code IS NOT NULL)".to_owned()),
                    Some(s) => {
                        parts.push("i.sys = ?".to_owned());
                        text(params, s);
                    }
                }
                if let Some(code) = code {
                    parts.push("i.code = ?".to_owned());
                    text(params, code);
                }
                ors.push(if parts.is_empty() { "1".to_owned() } else { format!("({})", parts.join(" AND ")) });
            }
            exists(name, &any(ors))
        }
        Clause::Text { name, any_of, exact } => {
            let mut ors = Vec::new();
            for v in any_of {
                if *exact {
                    ors.push("i.text = ?".to_owned());
                    text(params, v);
                } else {
                    ors.push("substr(i.text, 1, ?) = ?".to_owned());
                    params.push(SqlValue::Int(v.chars().count() as i64));
                    text(params, v);
                }
            }
            exists(name, &any(ors))
        }
        Clause::Contains { name, any_of } => {
            let mut ors = Vec::new();
            for v in any_of {
                ors.push("instr(i.text, ?) > 0".to_owned());
                text(params, v);
            }
            exists(name, &any(ors))
        }
        // String rows keep the value as written in `code` (see `index`).
        Clause::Exact { name, any_of } => {
            let mut ors = Vec::new();
            for v in any_of {
                ors.push("i.code = ?".to_owned());
                text(params, v);
            }
            exists(name, &any(ors))
        }
        Clause::Below { name, any_of } => {
            let mut ors = Vec::new();
            for v in any_of {
                let below = format!("{v}/");
                ors.push("(i.code = ? OR substr(i.code, 1, ?) = ?)".to_owned());
                text(params, v);
                params.push(SqlValue::Int(below.chars().count() as i64));
                text(params, &below);
            }
            exists(name, &any(ors))
        }
        Clause::Date { name, prefix, lo, hi } => {
            let (sql, values) = date_sql(*prefix, lo, hi);
            for v in values {
                text(params, v);
            }
            exists(name, &format!("i.date_lo IS NOT NULL AND {sql}"))
        }
        Clause::Reference { name, any_of } => {
            if any_of.is_empty() {
                return "0".to_owned();
            }
            let marks = vec!["?"; any_of.len()].join(", ");
            params.extend(any_of.iter().map(|r| SqlValue::Text(r.clone())));
            exists(name, &format!("i.reference IN ({marks})"))
        }
        Clause::Quantity { name, prefix, value, sys, code } => {
            let (op, bounds) = quantity_bounds(*prefix, *value);
            let mut parts = vec![op.to_owned()];
            params.extend(bounds.into_iter().map(SqlValue::Real));
            if let Some(sys) = sys {
                parts.push("i.sys = ?".into());
                text(params, sys);
            }
            if let Some(code) = code {
                parts.push("i.code = ?".into());
                text(params, code);
            }
            exists(name, &parts.join(" AND "))
        }
        Clause::Missing { name, missing } => {
            let some = exists(name, "1");
            if *missing {
                format!("NOT {some}")
            } else {
                some
            }
        }
        Clause::Not(inner) => format!("NOT {}", clause_sql(inner, params)),
        Clause::AnyOf(clauses) => {
            let ors: Vec<String> = clauses.iter().map(|c| clause_sql(c, params)).collect();
            format!("({})", any(ors))
        }
    }
}

/// Builds the SQL of a search (for the `res` / `idx` tables of a partition). `filters` are
/// the granular-scope clause groups, of which a result must match one. A search whose chains
/// or `_has` were not resolved matches nothing.
pub fn to_sql(search: &Search) -> SqlQuery {
    // The type is bound first: the clauses' `IN` lists refer to it as `?1`.
    let mut params: Vec<SqlValue> = vec![SqlValue::Text(search.resource_type.clone())];
    let mut conditions = vec!["r.type = ?1 AND r.deleted = 0".to_owned()];
    if search.unresolved() {
        conditions.push("0".to_owned());
    }
    if let Some(after) = &search.more.after_id {
        conditions.push("r.id > ?".to_owned());
        params.push(SqlValue::Text(after.clone()));
    }
    for clause in &search.clauses {
        conditions.push(clause_sql(clause, &mut params));
    }
    if !search.filters.is_empty() {
        let groups: Vec<String> = search
            .filters
            .iter()
            .map(|group| {
                let parts: Vec<String> = group.iter().map(|c| clause_sql(c, &mut params)).collect();
                if parts.is_empty() {
                    "1".to_owned()
                } else {
                    format!("({})", parts.join(" AND "))
                }
            })
            .collect();
        conditions.push(format!("({})", groups.join(" OR ")));
    }
    let filter = conditions.join(" AND ");
    let mut order: Vec<String> = search
        .sort_keys()
        .map(|(field, desc)| {
            let direction = if *desc { "DESC" } else { "ASC" };
            match sort_column(search, field) {
                None => format!("r.id {direction}"),
                Some(column) => {
                    // `INDEXED BY`: without statistics SQLite picks `idx_date` (type, name,
                    // date_lo) here and walks every date row of the type for each result
                    // (102 ms against 1.8 ms for 50 of 900 matches sorted by date).
                    format!(
                        "(SELECT MIN({column}) FROM idx i INDEXED BY idx_row_name WHERE i.type = r.type AND i.id = r.id AND i.name = '{}') {direction}",
                        field.replace('\'', "")
                    )
                }
            }
        })
        .collect();
    order.push("r.id".to_owned());
    let count_params = if search.total == Total::None { Vec::new() } else { params.clone() };
    let mut select_params = params;
    select_params.push(SqlValue::Int(search.count as i64));
    select_params.push(SqlValue::Int(search.offset as i64));
    SqlQuery {
        page_size: search.count,
        offset: search.offset,
        select: format!("SELECT r.id, r.content FROM res r WHERE {filter} ORDER BY {} LIMIT ? OFFSET ?", order.join(", ")),
        select_params,
        // `_total=none`: the partition answers -1 instead of counting.
        count: if search.total == Total::None { "SELECT -1 AS n".to_owned() } else { format!("SELECT COUNT(*) AS n FROM res r WHERE {filter}") },
        count_params,
    }
}
