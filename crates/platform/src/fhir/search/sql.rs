//! The SQL that runs a search inside one partition's SQLite database. Values are bound, never
//! spliced into the SQL.

use super::paging::sorts_as_text;
use super::query::{Clause, Prefix, Search};
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

fn prefix_sql(prefix: Prefix) -> &'static str {
    // [lo, hi) of the resource against [plo, phi) of the parameter (R4 §3.1.1.4.2, simplified
    // to ranges): eq = contained, ne = not contained, lt/le/gt/ge compare the ends.
    match prefix {
        Prefix::Eq => "(i.date_lo >= ? AND i.date_hi <= ?)",
        Prefix::Ne => "NOT (i.date_lo >= ? AND i.date_hi <= ?)",
        Prefix::Lt => "(i.date_lo < ? AND ? IS NOT NULL)",
        Prefix::Le => "(i.date_lo < ? AND ? IS NOT NULL)",
        Prefix::Gt => "(i.date_hi > ? AND ? IS NOT NULL)",
        Prefix::Ge => "(i.date_hi > ? AND ? IS NOT NULL)",
    }
}

/// The SQL condition of one clause (against the row `r`), binding its values.
fn clause_sql(clause: &Clause, params: &mut Vec<SqlValue>) -> String {
    let (name, inner) = match clause {
        Clause::Token { name, any_of } => {
            let mut ors = Vec::new();
            for (sys, code) in any_of {
                let mut parts = Vec::new();
                match sys.as_deref() {
                    None => {}
                    Some("") => parts.push("i.sys IS NULL".to_owned()),
                    Some(s) => {
                        parts.push("i.sys = ?".to_owned());
                        params.push(SqlValue::Text(s.to_owned()));
                    }
                }
                if let Some(code) = code {
                    parts.push("i.code = ?".to_owned());
                    params.push(SqlValue::Text(code.clone()));
                }
                ors.push(if parts.is_empty() { "1".to_owned() } else { format!("({})", parts.join(" AND ")) });
            }
            (name, ors.join(" OR "))
        }
        Clause::Text { name, any_of, exact } => {
            let mut ors = Vec::new();
            for v in any_of {
                if *exact {
                    ors.push("i.text = ?".to_owned());
                    params.push(SqlValue::Text(v.clone()));
                } else {
                    ors.push("substr(i.text, 1, ?) = ?".to_owned());
                    params.push(SqlValue::Int(v.chars().count() as i64));
                    params.push(SqlValue::Text(v.clone()));
                }
            }
            (name, ors.join(" OR "))
        }
        Clause::Date { name, prefix, lo, hi } => {
            let (a, b) = match prefix {
                Prefix::Eq | Prefix::Ne => (lo, hi),
                Prefix::Lt | Prefix::Ge => (lo, lo),
                Prefix::Le | Prefix::Gt => (hi, hi),
            };
            params.push(SqlValue::Text(a.clone()));
            params.push(SqlValue::Text(b.clone()));
            (name, prefix_sql(*prefix).to_owned())
        }
        Clause::Reference { name, any_of } => {
            let marks = vec!["?"; any_of.len()].join(", ");
            params.extend(any_of.iter().map(|r| SqlValue::Text(r.clone())));
            (name, format!("i.reference IN ({marks})"))
        }
        Clause::Quantity { name, prefix, value, sys, code } => {
            let op = match prefix {
                Prefix::Eq => "=",
                Prefix::Ne => "<>",
                Prefix::Lt => "<",
                Prefix::Le => "<=",
                Prefix::Gt => ">",
                Prefix::Ge => ">=",
            };
            let mut parts = vec![format!("i.num {op} ?")];
            params.push(SqlValue::Real(*value));
            if let Some(sys) = sys {
                parts.push("i.sys = ?".into());
                params.push(SqlValue::Text(sys.clone()));
            }
            if let Some(code) = code {
                parts.push("i.code = ?".into());
                params.push(SqlValue::Text(code.clone()));
            }
            (name, parts.join(" AND "))
        }
    };
    // Parameter names come from the static registry, never from the request.
    format!("EXISTS (SELECT 1 FROM idx i WHERE i.type = r.type AND i.id = r.id AND i.name = '{}' AND ({inner}))", name.replace('\'', ""))
}

/// Builds the SQL of a search (for the `res` / `idx` tables of a partition). `filters` are
/// the granular-scope clause groups, of which a result must match one.
pub fn to_sql(search: &Search) -> SqlQuery {
    let mut params: Vec<SqlValue> = vec![SqlValue::Text(search.resource_type.clone())];
    let mut conditions = vec!["r.type = ? AND r.deleted = 0".to_owned()];
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
    let order = match &search.sort {
        Some((field, desc)) if field != "_id" => format!(
            "(SELECT MIN({}) FROM idx i WHERE i.type = r.type AND i.id = r.id AND i.name = '{}') {}, r.id",
            if sorts_as_text(search, field) { "i.text" } else { "i.date_lo" },
            field.replace('\'', ""),
            if *desc { "DESC" } else { "ASC" }
        ),
        Some((_, true)) => "r.id DESC".to_owned(),
        _ => "r.id".to_owned(),
    };
    let count_params = params.clone();
    let mut select_params = params;
    select_params.push(SqlValue::Int(search.count as i64));
    select_params.push(SqlValue::Int(search.offset as i64));
    SqlQuery {
        page_size: search.count,
        offset: search.offset,
        select: format!("SELECT r.id, r.content FROM res r WHERE {filter} ORDER BY {order} LIMIT ? OFFSET ?"),
        select_params,
        count: format!("SELECT COUNT(*) AS n FROM res r WHERE {filter}"),
        count_params,
    }
}
