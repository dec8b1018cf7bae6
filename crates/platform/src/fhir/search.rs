//! FHIR search (R4 §3.1.1, <https://hl7.org/fhir/R4/search.html>): the index rows a resource
//! contributes, the parsing of a search query, and the SQL that runs it inside one
//! partition's SQLite database. Values are bound, never spliced into the SQL.

use super::params::{self, Kind, Param};

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `Type/id` references found at the paths of `source`'s reference parameter `name`.
pub fn references(resource: &Value, source: &str, name: &str) -> Vec<String> {
    let Some(param) = params::find(source, name) else { return Vec::new() };
    param
        .paths
        .iter()
        .flat_map(|path| values_at(resource, path))
        .filter_map(|v| v.get("reference").and_then(Value::as_str))
        .filter(|r| r.split('/').count() == 2)
        .map(str::to_owned)
        .collect()
}

/// One row of the `idx` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IndexEntry {
    pub name: String,
    pub sys: Option<String>,
    pub code: Option<String>,
    pub text: Option<String>,
    pub date_lo: Option<String>,
    pub date_hi: Option<String>,
    pub num: Option<f64>,
    pub reference: Option<String>,
}

/// The JSON values at a dot path, arrays walked through.
pub fn values_at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(other) => next.push(other),
                None => {}
            }
        }
        current = next;
    }
    current
}

const INSTANT: &str = "%Y-%m-%dT%H:%M:%SZ";

fn fmt(t: DateTime<Utc>) -> String {
    t.format(INSTANT).to_string()
}

/// The half-open UTC range `[lo, hi)` a FHIR date, dateTime or instant covers, from its
/// precision (`2020` is the whole year).
pub fn date_range(s: &str) -> Option<(String, String)> {
    // Every form is ASCII and starts with a four-digit year; anything else is refused before
    // the byte slicing below.
    if !s.is_ascii() || !s.as_bytes().get(..4).is_some_and(|y| y.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    // Ranges compare as text in SQL: both ends must be years 0000-9999 in the same format.
    let range = date_range_unchecked(s)?;
    let well_formed = |t: &str| t.len() == INSTANT_LEN && t.as_bytes()[0].is_ascii_digit();
    (well_formed(&range.0) && well_formed(&range.1) && range.0 < range.1).then_some(range)
}

/// `2020-01-01T00:00:00Z`.
const INSTANT_LEN: usize = 20;

fn date_range_unchecked(s: &str) -> Option<(String, String)> {
    let day = |y: i32, m: u32, d: u32| NaiveDate::from_ymd_opt(y, m, d).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    match s.len() {
        4 => {
            let y: i32 = s.parse().ok()?;
            Some((fmt(day(y, 1, 1)?), fmt(day(y + 1, 1, 1)?)))
        }
        7 => {
            let (y, m) = (s[..4].parse().ok()?, s[5..7].parse().ok()?);
            let lo = day(y, m, 1)?;
            Some((fmt(lo), fmt(lo.checked_add_months(Months::new(1))?)))
        }
        10 => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            let lo = day(d.year(), d.month(), d.day())?;
            Some((fmt(lo), fmt(lo + TimeDelta::days(1))))
        }
        _ => {
            // hh:mm precision (allowed in search values) or full seconds, with a zone.
            let with_seconds = if s.len() >= 16 && s.as_bytes().get(16) != Some(&b':') {
                format!("{}:00{}", &s[..16], &s[16..])
            } else {
                s.to_owned()
            };
            let t = DateTime::parse_from_rfc3339(&with_seconds)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| NaiveDateTime::parse_from_str(&with_seconds, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
                .ok()?;
            let step = if s.len() >= 16 && s.as_bytes().get(16) != Some(&b':') { TimeDelta::minutes(1) } else { TimeDelta::seconds(1) };
            let lo = t.with_nanosecond_zero();
            Some((fmt(lo), fmt(lo + step)))
        }
    }
}

trait TruncateNanos {
    fn with_nanosecond_zero(self) -> Self;
}

impl TruncateNanos for DateTime<Utc> {
    fn with_nanosecond_zero(self) -> Self {
        chrono::Timelike::with_nanosecond(&self, 0).unwrap_or(self)
    }
}

fn index_value(param: &Param, value: &Value, out: &mut Vec<IndexEntry>) {
    let entry = |e: IndexEntry| IndexEntry { name: param.name.to_owned(), ..e };
    match (param.kind, value) {
        (Kind::Token, Value::String(code)) => out.push(entry(IndexEntry { code: Some(code.clone()), ..Default::default() })),
        (Kind::Token, Value::Bool(b)) => out.push(entry(IndexEntry { code: Some(b.to_string()), ..Default::default() })),
        (Kind::Token, Value::Object(o)) => {
            let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                for c in codings {
                    let code = c.get("code").and_then(Value::as_str).map(str::to_owned);
                    let sys = c.get("system").and_then(Value::as_str).map(str::to_owned);
                    out.push(entry(IndexEntry { sys, code, ..Default::default() }));
                }
            } else if o.contains_key("value") {
                out.push(entry(IndexEntry { sys: text("system"), code: text("value"), ..Default::default() }));
            } else if o.contains_key("code") {
                out.push(entry(IndexEntry { sys: text("system"), code: text("code"), ..Default::default() }));
            }
        }
        (Kind::String, Value::String(s)) => out.push(entry(IndexEntry { text: Some(s.to_lowercase()), ..Default::default() })),
        (Kind::Date, Value::String(s)) => {
            if let Some((lo, hi)) = date_range(s) {
                out.push(entry(IndexEntry { date_lo: Some(lo), date_hi: Some(hi), ..Default::default() }));
            }
        }
        (Kind::Date, Value::Object(period)) => {
            let lo = period.get("start").and_then(Value::as_str).and_then(date_range).map(|r| r.0);
            let hi = period.get("end").and_then(Value::as_str).and_then(date_range).map(|r| r.1);
            if lo.is_some() || hi.is_some() {
                out.push(entry(IndexEntry {
                    date_lo: Some(lo.unwrap_or_else(|| "0000-01-01T00:00:00Z".into())),
                    date_hi: Some(hi.unwrap_or_else(|| "9999-12-31T23:59:59Z".into())),
                    ..Default::default()
                }));
            }
        }
        (Kind::Reference, Value::Object(r)) => {
            if let Some(reference) = r.get("reference").and_then(Value::as_str) {
                out.push(entry(IndexEntry { reference: Some(reference.to_owned()), ..Default::default() }));
            }
        }
        (Kind::Quantity, Value::Object(q)) => {
            if let Some(num) = q.get("value").and_then(Value::as_f64) {
                let text = |k: &str| q.get(k).and_then(Value::as_str).map(str::to_owned);
                out.push(entry(IndexEntry { num: Some(num), sys: text("system"), code: text("code").or(text("unit")), ..Default::default() }));
            }
        }
        _ => {}
    }
}

/// The index rows of a resource.
pub fn index(resource: &Value) -> Vec<IndexEntry> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else { return Vec::new() };
    let mut out = Vec::new();
    for param in params::COMMON.iter().chain(params::params_of(resource_type).unwrap_or_default()) {
        for path in param.paths {
            for value in values_at(resource, path) {
                index_value(param, value, &mut out);
            }
        }
    }
    out
}

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
const MAX_CLAUSES: usize = 8;
const MAX_VALUES: usize = 5;
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
    Token { name: String, any_of: Vec<(Option<String>, Option<String>)> },
    Text { name: String, any_of: Vec<String>, exact: bool },
    Date { name: String, prefix: Prefix, lo: String, hi: String },
    Reference { name: String, any_of: Vec<String> },
    Quantity { name: String, prefix: Prefix, value: f64, sys: Option<String>, code: Option<String> },
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
    let mut search = Search { resource_type: resource_type.to_owned(), clauses: Vec::new(), count: DEFAULT_COUNT, offset: 0, sort: None, summary_count: false, ignored: Vec::new(), filters: Vec::new(), includes: Vec::new(), revincludes: Vec::new() };
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
                let param = params::find(source, param_name).filter(|p| p.kind == Kind::Reference).ok_or_else(|| bad("a reference parameter of a served type"))?;
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
            (Kind::Quantity, None) => {
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

/// The patient a search is about, from its `patient` / `subject` parameter (one value).
pub fn patient_of(search: &Search) -> Option<String> {
    search.clauses.iter().find_map(|c| match c {
        Clause::Reference { name, any_of } if (name == "patient" || name == "subject") && any_of.len() == 1 => {
            any_of[0].strip_prefix("Patient/").map(str::to_owned)
        }
        _ => None,
    })
}

/// Where a search runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Partition(String),
    /// The search asks for another patient than the one the token is confined to.
    Empty,
    /// A search of patient data across every patient, which this server does not run.
    NeedsPatient,
}

/// The partition a search runs in, given the patient the caller is confined to (if any): a
/// patient-scoped search touches exactly one partition.
pub fn target(search: &Search, confined_to: Option<&str>) -> Target {
    use super::store::{patient_partition, shared_partition, DIRECTORY};
    let asked = patient_of(search);
    let t = search.resource_type.as_str();
    if t == "Patient" {
        return match confined_to {
            Some(p) => Target::Partition(patient_partition(p)),
            None => Target::Partition(DIRECTORY.to_owned()),
        };
    }
    if params::compartment_paths(t).is_none() {
        return Target::Partition(shared_partition(t));
    }
    match (confined_to, asked) {
        (Some(p), Some(a)) if a != p => Target::Empty,
        (Some(p), _) => Target::Partition(patient_partition(p)),
        (None, Some(a)) => Target::Partition(patient_partition(&a)),
        (None, None) => Target::NeedsPatient,
    }
}

/// Most partitions a search without patient context fans out to.
pub const MAX_FANOUT: usize = 200;

/// The sort key of a resource for `search` (merging pages from several partitions): the
/// earliest value of the sort parameter, or the id.
pub fn sort_key(search: &Search, id: &str, resource: &Value) -> String {
    match &search.sort {
        Some((field, _)) if field != "_id" => {
            let text = sorts_as_text(search, field);
            index(resource).into_iter().filter(|r| &r.name == field).filter_map(|r| if text { r.text } else { r.date_lo }).min().unwrap_or_default()
        }
        _ => id.to_owned(),
    }
}

/// Whether the sort parameter is a string one (sorted by its lower-cased text; dates by their
/// earliest instant).
fn sorts_as_text(search: &Search, field: &str) -> bool {
    params::find(&search.resource_type, field).is_some_and(|p| p.kind == Kind::String)
}

/// The order of two results as the SQL of [`to_sql`] sorts them: by the sort key (descending
/// for `-param`), ties by id ascending (`_sort=-_id` is by id descending).
pub fn order(search: &Search, a: (&str, &str), b: (&str, &str)) -> std::cmp::Ordering {
    let by_key = if descending(search) { b.0.cmp(a.0) } else { a.0.cmp(b.0) };
    by_key.then_with(|| a.1.cmp(b.1))
}

/// Whether the merged order is descending.
pub fn descending(search: &Search) -> bool {
    search.sort.as_ref().is_some_and(|(_, desc)| *desc)
}

/// The searchset Bundle's `self`, `next` and `previous` links (R4 §3.1.1.5.1): the query as
/// given, with `_count` and `_offset` set for each page.
pub fn links(url_base: &str, pairs: &[(String, String)], search: &Search, total: i64) -> Vec<(&'static str, String)> {
    let page = |offset: usize| {
        let mut query: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != "_count" && k != "_offset").cloned().collect();
        query.push(("_count".into(), search.count.to_string()));
        query.push(("_offset".into(), offset.to_string()));
        format!("{url_base}?{}", serde_urlencoded::to_string(&query).unwrap_or_default())
    };
    let mut links = vec![("self", page(search.offset))];
    if (search.offset.saturating_add(search.count) as i64) < total && search.count > 0 {
        links.push(("next", page(search.offset + search.count)));
    }
    if search.offset > 0 {
        links.push(("previous", page(search.offset.saturating_sub(search.count))));
    }
    links
}

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
                if parts.is_empty() { "1".to_owned() } else { format!("({})", parts.join(" AND ")) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn date_ranges_follow_precision_and_time_zones() {
        assert_eq!(date_range("2020"), Some(("2020-01-01T00:00:00Z".into(), "2021-01-01T00:00:00Z".into())));
        assert_eq!(date_range("2020-02"), Some(("2020-02-01T00:00:00Z".into(), "2020-03-01T00:00:00Z".into())));
        assert_eq!(date_range("2020-12-31"), Some(("2020-12-31T00:00:00Z".into(), "2021-01-01T00:00:00Z".into())));
        assert_eq!(date_range("2019-05-01T10:00:00-04:00"), Some(("2019-05-01T14:00:00Z".into(), "2019-05-01T14:00:01Z".into())));
        assert_eq!(date_range("2019-05-01T10:00-04:00"), Some(("2019-05-01T14:00:00Z".into(), "2019-05-01T14:01:00Z".into())));
        assert_eq!(date_range("2019-05-01T10:00:00.123Z").unwrap().0, "2019-05-01T10:00:00Z");
        for bad in ["20", "2020-13", "2020-02-30", "yesterday", "2020-05-01T25:00:00Z"] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn indexes_tokens_dates_references_strings_and_quantities() {
        let obs = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2019-05-01T10:00:00-04:00",
            "valueQuantity": {"value": 5.8, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}});
        let rows = index(&obs);
        let find = |name: &str| rows.iter().filter(|r| r.name == name).cloned().collect::<Vec<_>>();
        assert_eq!(find("code")[0].code.as_deref(), Some("4548-4"));
        assert_eq!(find("code")[0].sys.as_deref(), Some("http://loinc.org"));
        assert_eq!(find("patient")[0].reference.as_deref(), Some("Patient/p1"));
        assert_eq!(find("date")[0].date_lo.as_deref(), Some("2019-05-01T14:00:00Z"));
        assert_eq!(find("value-quantity")[0].num, Some(5.8));
        assert_eq!(find("_id")[0].code.as_deref(), Some("o1"));
        let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Hintz", "given": ["Ned"]}], "gender": "male"});
        let rows = index(&patient);
        assert!(rows.iter().any(|r| r.name == "name" && r.text.as_deref() == Some("hintz")));
        assert!(rows.iter().any(|r| r.name == "gender" && r.code.as_deref() == Some("male")));
    }

    #[test]
    fn parses_queries_and_refuses_what_it_cannot_run() {
        let s = parse("Observation", &pairs(&[("patient", "p1"), ("code", "http://loinc.org|4548-4,2339-0"), ("date", "ge2020"), ("_sort", "-date"), ("_count", "10"), ("foo", "bar")]), false).unwrap();
        assert_eq!(patient_of(&s).as_deref(), Some("p1"));
        assert_eq!(s.count, 10);
        assert_eq!(s.sort, Some(("date".into(), true)));
        assert_eq!(s.ignored, vec!["foo"]);
        assert!(matches!(&s.clauses[1], Clause::Token { any_of, .. } if any_of.len() == 2 && any_of[0].0.as_deref() == Some("http://loinc.org")));
        assert_eq!(parse("Observation", &pairs(&[("foo", "bar")]), true), Err(SearchError::UnknownParameter("foo".into())));
        assert_eq!(parse("Observation", &pairs(&[("_count", "9999")]), false), Err(SearchError::BadCount));
        assert_eq!(parse("Observation", &pairs(&[("_count", "-1")]), false), Err(SearchError::BadCount));
        assert!(matches!(parse("Observation", &pairs(&[("date", "ge-notadate")]), false), Err(SearchError::BadValue(..))));
        for q in ["lt1e999", "inf", "nan", "ne-nan"] {
            assert!(matches!(parse("Observation", &pairs(&[("value-quantity", q)]), false), Err(SearchError::BadValue(..))), "{q}");
        }
        assert!(matches!(parse("Observation", &pairs(&[("_offset", "18446744073709551615")]), false), Err(SearchError::BadValue(..))));
        assert_eq!(parse("Observation", &pairs(&[("_offset", "10000")]), false).unwrap().offset, MAX_OFFSET);
        assert!(matches!(parse("Observation", &pairs(&[("code:text", "x")]), false), Err(SearchError::BadValue(..))));
        assert!(matches!(parse("Observation", &pairs(&[("_sort", "code")]), false), Err(SearchError::BadValue(..))));
        let by_family = to_sql(&parse("Patient", &pairs(&[("_sort", "family")]), false).unwrap());
        assert!(by_family.select.contains("ORDER BY (SELECT MIN(i.text) FROM idx i WHERE i.type = r.type AND i.id = r.id AND i.name = 'family') ASC, r.id"));
        let a = json!({"resourceType": "Patient", "id": "z", "name": [{"family": "Abbott"}]});
        let b = json!({"resourceType": "Patient", "id": "a", "name": [{"family": "Zulauf"}]});
        let q = parse("Patient", &pairs(&[("_sort", "family")]), false).unwrap();
        assert!(sort_key(&q, "z", &a) < sort_key(&q, "a", &b), "by family name, not by id");
        let many = vec![("code".to_string(), ["a"; MAX_VALUES + 1].join(","))];
        assert_eq!(parse("Observation", &many, false), Err(SearchError::TooComplex));
    }

    #[test]
    fn sql_binds_every_value_and_stays_within_the_bound_parameter_limit() {
        let s = parse("Observation", &pairs(&[("patient", "Patient/p1"), ("code", "http://loinc.org|4548-4"), ("date", "ge2020-01-01"), ("value-quantity", "gt5|http://unitsofmeasure.org|%"), ("_sort", "-date")]), false).unwrap();
        let sql = to_sql(&s);
        assert!(!sql.select.contains("4548-4") && !sql.select.contains("p1"), "values are bound, not spliced");
        assert_eq!(sql.select.matches('?').count(), sql.select_params.len());
        assert_eq!(sql.count.matches('?').count(), sql.count_params.len());
        assert!(sql.select.contains("ORDER BY (SELECT MIN(i.date_lo)"));
        let worst: Vec<(String, String)> = (0..MAX_CLAUSES).map(|_| ("code".to_string(), ["s|c"; MAX_VALUES].join(","))).collect();
        let sql = to_sql(&parse("Observation", &worst, false).unwrap());
        assert!(sql.select_params.len() <= MAX_BOUND);
    }

    #[test]
    fn include_and_revinclude_name_reference_parameters() {
        let s = parse("Observation", &pairs(&[("_include", "Observation:encounter")]), false).unwrap();
        assert_eq!(s.includes[0].1, "encounter");
        let r = parse("Encounter", &pairs(&[("_revinclude", "Observation:encounter")]), false).unwrap();
        assert_eq!(r.revincludes[0].0, "Observation");
        assert!(matches!(parse("Observation", &pairs(&[("_include", "Observation:code")]), false), Err(SearchError::BadValue(..))));
        assert!(matches!(parse("Observation", &pairs(&[("_include", "Encounter:patient")]), false), Err(SearchError::BadValue(..))));
        let obs = json!({"resourceType": "Observation", "encounter": {"reference": "Encounter/e1"}});
        assert_eq!(references(&obs, "Observation", "encounter"), vec!["Encounter/e1"]);
    }

    #[test]
    fn a_patient_scoped_search_targets_one_partition() {
        let obs = |list: &[(&str, &str)]| parse("Observation", &pairs(list), false).unwrap();
        assert_eq!(target(&obs(&[]), Some("p1")), Target::Partition("patient/p1".into()));
        assert_eq!(target(&obs(&[("patient", "p1")]), Some("p1")), Target::Partition("patient/p1".into()));
        assert_eq!(target(&obs(&[("patient", "p2")]), Some("p1")), Target::Empty);
        assert_eq!(target(&obs(&[("subject", "Patient/p2")]), None), Target::Partition("patient/p2".into()));
        assert_eq!(target(&obs(&[]), None), Target::NeedsPatient);
        assert_eq!(target(&parse("Patient", &[], false).unwrap(), None), Target::Partition("directory".into()));
        assert_eq!(target(&parse("Practitioner", &[], false).unwrap(), Some("p1")), Target::Partition("shared/Practitioner".into()));
    }

    #[test]
    fn paging_links_keep_the_query_and_move_the_offset() {
        let q = pairs(&[("patient", "p1"), ("_count", "10")]);
        let s = parse("Observation", &q, false).unwrap();
        let l = links("https://x/fhir/Observation", &q, &s, 25);
        assert_eq!(l[0], ("self", "https://x/fhir/Observation?patient=p1&_count=10&_offset=0".into()));
        assert_eq!(l[1], ("next", "https://x/fhir/Observation?patient=p1&_count=10&_offset=10".into()));
        assert_eq!(links("u", &q, &s, 10).len(), 1, "no next on the last page");
    }

    #[test]
    fn granular_filters_are_or_groups_and_match_in_memory_too() {
        let mut s = parse("Observation", &pairs(&[("patient", "p1")]), false).unwrap();
        s.filters = vec![parse("Observation", &pairs(&[("category", "laboratory")]), true).unwrap().clauses, parse("Observation", &pairs(&[("category", "vital-signs")]), true).unwrap().clauses];
        let sql = to_sql(&s);
        assert!(sql.select.contains(") OR ("));
        assert_eq!(sql.select.matches('?').count(), sql.select_params.len());
        let lab = index(&json!({"resourceType": "Observation", "id": "o", "category": [{"coding": [{"code": "laboratory"}]}]}));
        let vital = index(&json!({"resourceType": "Observation", "id": "o", "category": [{"coding": [{"code": "vital-signs"}]}]}));
        assert!(matches(&lab, &s.filters[0]));
        assert!(!matches(&vital, &s.filters[0]));
    }

    mod fuzz {
        //! Arbitrary UTF-8 through every parser of search input: typed errors, never a panic.
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::json;

        fn served_type() -> impl Strategy<Value = String> {
            proptest::sample::select(params::TYPES.iter().map(|(t, _)| t.to_string()).collect::<Vec<_>>())
        }

        /// Parameter names with and without modifiers, and the control parameters.
        fn name() -> impl Strategy<Value = String> {
            let known = ["date", "_lastUpdated", "code", "category", "patient", "subject", "value-quantity", "name", "birthdate", "_id", "_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "identifier", "code:text", "name:exact", "date:missing"];
            prop_oneof![proptest::sample::select(known.to_vec()).prop_map(str::to_owned), any::<String>()]
        }

        /// Values near the real forms (dates, prefixes, tokens, quantities) with any character
        /// spliced in, and arbitrary strings.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "(eq|ne|lt|gt|le|ge|sa)?[0-9]{0,4}-?[0-9]{0,2}-?[0-9]{0,2}(T[0-9]{0,2}:?[0-9]{0,2}:?[0-9]{0,2})?(Z|[+-][0-9]{2}:[0-9]{2})?",
                (any::<String>(), "[0-9T:+-]{0,20}", any::<String>()).prop_map(|(a, b, c)| format!("{b}{a}{b}{c}")),
                "[a-z:/.]{0,12}\\|?[0-9a-zé-]{0,8}(,[a-z]{0,4})?",
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn search_queries_parse_or_fail_cleanly(t in served_type(), pairs in proptest::collection::vec((name(), value()), 0..6), strict in any::<bool>()) {
                if let Ok(query) = parse(&t, &pairs, strict) {
                    let sql = to_sql(&query);
                    prop_assert_eq!(sql.select.matches('?').count(), sql.select_params.len());
                }
            }

            #[test]
            fn dates_parse_or_fail_cleanly(s in value()) {
                if let Some((lo, hi)) = date_range(&s) {
                    prop_assert!(lo < hi);
                }
            }

            #[test]
            fn any_resource_content_indexes(t in served_type(), date in value(), code in any::<String>(), num in any::<f64>()) {
                let resource = json!({"resourceType": t, "id": "x", "effectiveDateTime": date, "birthDate": date,
                    "code": {"coding": [{"system": code, "code": code}]}, "valueQuantity": {"value": num, "unit": code},
                    "meta": {"lastUpdated": date}, "period": {"start": date, "end": code}, "name": [{"family": code}]});
                let rows = index(&resource);
                let _ = matches(&rows, &[]);
            }
        }
    }
}
