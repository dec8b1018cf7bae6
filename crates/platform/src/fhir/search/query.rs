//! A search query parsed and checked (R4 §3.1.1): its clauses, paging, sort and includes.

use super::super::params::{self, Kind};
use super::index::date_range;
use super::sql::to_sql;
use serde::{Deserialize, Serialize};

/// Why a search was refused (400 OperationOutcome).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("the search parameter {0} is not supported for this type")]
    UnknownParameter(String),
    #[error("the value of {0} is not valid: {1}")]
    BadValue(String, String),
    #[error("_count must be 0 to {MAX_COUNT}")]
    BadCount,
    #[error("the search is too complex (at most {MAX_CLAUSES} parameters and {MAX_VALUES} values each)")]
    TooComplex,
}

pub const DEFAULT_COUNT: usize = 50;
/// Deepest page start: a search across patients reads `_offset + _count` rows per partition.
pub const MAX_OFFSET: usize = 10_000;
pub const MAX_COUNT: usize = 500;
pub(super) const MAX_CLAUSES: usize = 8;
pub(super) const MAX_VALUES: usize = 5;
/// Durable Object SQLite binds at most 100 parameters per statement.
pub const MAX_BOUND: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prefix {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Clause {
    /// Any of (system, code); `None` system = any system, `Some("")` = no system.
    Token {
        name: String,
        any_of: Vec<(Option<String>, Option<String>)>,
    },
    Text {
        name: String,
        any_of: Vec<String>,
        exact: bool,
    },
    Date {
        name: String,
        prefix: Prefix,
        lo: String,
        hi: String,
    },
    Reference {
        name: String,
        any_of: Vec<String>,
    },
    Quantity {
        name: String,
        prefix: Prefix,
        value: f64,
        sys: Option<String>,
        code: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
    pub count: usize,
    pub offset: usize,
    /// Parameter name and descending.
    pub sort: Option<(String, bool)>,
    pub summary_count: bool,
    /// Unknown parameters that were ignored (reported in the Bundle).
    pub ignored: Vec<String>,
    /// Granular-scope clause groups (see [`to_sql`]).
    #[serde(default)]
    pub filters: Vec<Vec<Clause>>,
    /// `_include=Source:param` (non-iterative): resources the results reference.
    #[serde(default)]
    pub includes: Vec<(String, String)>,
    /// `_revinclude=Source:param`: resources that reference the results.
    #[serde(default)]
    pub revincludes: Vec<(String, String)>,
}

fn split_prefix(v: &str) -> (Prefix, &str) {
    let prefixes = [("eq", Prefix::Eq), ("ne", Prefix::Ne), ("lt", Prefix::Lt), ("gt", Prefix::Gt), ("le", Prefix::Le), ("ge", Prefix::Ge)];
    for (p, prefix) in prefixes {
        if let Some(rest) = v.strip_prefix(p) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                return (prefix, rest);
            }
        }
    }
    (Prefix::Eq, v)
}

/// Parses the query of `GET [base]/{type}?…`. With `strict` (Prefer: handling=strict) an
/// unknown parameter is an error; otherwise it is ignored and reported.
pub fn parse(resource_type: &str, pairs: &[(String, String)], strict: bool) -> Result<Search, SearchError> {
    let mut search = Search {
        resource_type: resource_type.to_owned(),
        clauses: Vec::new(),
        count: DEFAULT_COUNT,
        offset: 0,
        sort: None,
        summary_count: false,
        ignored: Vec::new(),
        filters: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
    };
    for (key, value) in pairs {
        let bad = |why: &str| SearchError::BadValue(key.clone(), why.to_owned());
        let (name, modifier) = key.split_once(':').map_or((key.as_str(), None), |(n, m)| (n, Some(m)));
        match name {
            "_count" => {
                search.count = value.parse().ok().filter(|c| *c <= MAX_COUNT).ok_or(SearchError::BadCount)?;
                continue;
            }
            "_offset" => {
                search.offset = value.parse().ok().filter(|o| *o <= MAX_OFFSET).ok_or_else(|| bad(&format!("a whole number up to {MAX_OFFSET}")))?;
                continue;
            }
            "_sort" => {
                let (field, desc) = value.strip_prefix('-').map_or((value.as_str(), false), |f| (f, true));
                let ok = field == "_id" || params::find(resource_type, field).is_some_and(|p| matches!(p.kind, Kind::Date | Kind::String));
                if !ok {
                    return Err(bad("sort by _id, a date or a string parameter"));
                }
                search.sort = Some((field.to_owned(), desc));
                continue;
            }
            "_summary" if value == "count" => {
                search.summary_count = true;
                continue;
            }
            "_include" | "_revinclude" => {
                // Source:param[:Target], non-iterative; the parameter must be a reference.
                let mut parts = value.split(':');
                let (Some(source), Some(param_name)) = (parts.next(), parts.next()) else { return Err(bad("Source:parameter")) };
                let param =
                    params::find(source, param_name).filter(|p| p.kind == Kind::Reference).ok_or_else(|| bad("a reference parameter of a served type"))?;
                if name == "_include" {
                    if source != resource_type {
                        return Err(bad("_include names a parameter of the searched type"));
                    }
                    search.includes.push((source.to_owned(), param.name.to_owned()));
                } else {
                    search.revincludes.push((source.to_owned(), param.name.to_owned()));
                }
                if search.includes.len() + search.revincludes.len() > 4 {
                    return Err(SearchError::TooComplex);
                }
                continue;
            }
            "_total" | "_format" | "_pretty" => continue,
            _ => {}
        }
        let Some(param) = params::find(resource_type, name) else {
            if strict {
                return Err(SearchError::UnknownParameter(key.clone()));
            }
            search.ignored.push(key.clone());
            continue;
        };
        if search.clauses.len() >= MAX_CLAUSES {
            return Err(SearchError::TooComplex);
        }
        let values: Vec<&str> = value.split(',').collect();
        if values.len() > MAX_VALUES || values.iter().any(|v| v.is_empty()) {
            return Err(if values.len() > MAX_VALUES { SearchError::TooComplex } else { bad("empty value") });
        }
        let name = param.name.to_owned();
        let clause = match (param.kind, modifier) {
            (Kind::Token, None) => Clause::Token {
                name,
                any_of: values
                    .iter()
                    .map(|v| match v.split_once('|') {
                        Some((sys, code)) => (Some(sys.to_owned()), Some(code.to_owned()).filter(|c| !c.is_empty())),
                        None => (None, Some((*v).to_owned())),
                    })
                    .collect(),
            },
            (Kind::String, None | Some("exact")) => Clause::Text { name, any_of: values.iter().map(|v| v.to_lowercase()).collect(), exact: modifier.is_some() },
            (Kind::Date, None) => {
                if values.len() > 1 {
                    return Err(bad("one date per parameter; repeat the parameter for a range"));
                }
                let (prefix, date) = split_prefix(values[0]);
                let (lo, hi) = date_range(date).ok_or_else(|| bad("a FHIR date such as 2020, 2020-05 or 2020-05-01"))?;
                Clause::Date { name, prefix, lo, hi }
            }
            (Kind::Reference, None) => Clause::Reference {
                name: name.clone(),
                any_of: values
                    .iter()
                    .map(|v| if v.contains('/') { (*v).to_owned() } else { format!("{}/{v}", reference_target(resource_type, &name)) })
                    .collect(),
            },
            // A uri matches exactly (R4 §3.1.1.5.13), like a token without a system.
            (Kind::Uri, None) => Clause::Token { name, any_of: values.iter().map(|v| (None, Some((*v).to_owned()))).collect() },
            (Kind::Quantity | Kind::Number, None) => {
                let (prefix, rest) = split_prefix(values[0]);
                let mut parts = rest.splitn(3, '|');
                // Finite numbers only: SQLite stores a NaN as NULL and JSON has no infinity.
                let number = parts.next().and_then(|n| n.parse::<f64>().ok()).filter(|n| n.is_finite()).ok_or_else(|| bad("[prefix]number[|system|code]"))?;
                let sys = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                Clause::Quantity { name, prefix, value: number, sys, code }
            }
            (_, Some(m)) => return Err(bad(&format!("the modifier :{m} is not supported"))),
        };
        search.clauses.push(clause);
    }
    if to_sql(&search).select_params.len() > MAX_BOUND {
        return Err(SearchError::TooComplex);
    }
    Ok(search)
}

/// The type a bare id in a reference parameter refers to.
fn reference_target(_resource_type: &str, name: &str) -> &'static str {
    match name {
        "encounter" => "Encounter",
        _ => "Patient",
    }
}
