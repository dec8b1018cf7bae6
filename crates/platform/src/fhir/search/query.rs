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
    /// Starts after the value's range.
    Sa,
    /// Ends before the value's range.
    Eb,
    /// Approximately (R4 §3.1.1.4.2: dates within 10% of the gap to now, numbers within 10%).
    Ap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Clause {
    /// Any of (system, code); `None` system = any system, `Some("")` = no system.
    Token {
        name: String,
        any_of: Vec<(Option<String>, Option<String>)>,
    },
    /// Lower-cased text: starts with one of `any_of` (or equals one with `exact`). Strings, and
    /// the display text of tokens (`:text`).
    Text {
        name: String,
        any_of: Vec<String>,
        exact: bool,
    },
    /// `lo`/`hi`: the value's range (for `ap`, already widened).
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
    /// String `:contains`: one of the lower-cased values anywhere in the lower-cased text.
    Contains {
        name: String,
        any_of: Vec<String>,
    },
    /// String `:exact`: the whole value as written, case and accents included.
    Exact {
        name: String,
        any_of: Vec<String>,
    },
    /// Uri `:below`: the indexed uri is one of the values or lies below one in the path
    /// (`http://acme.org/fhir/` holds `http://acme.org/fhir/ValueSet/1`). (`:above` is a
    /// [`Clause::Token`] over the value's path ancestors, see [`uri_ancestors`].)
    Below {
        name: String,
        any_of: Vec<String>,
    },
    /// `:missing=true` (no value of the parameter) or `:missing=false` (some value).
    Missing {
        name: String,
        missing: bool,
    },
    /// `:not`: no value of the parameter matches the inner clause (R4: a resource without
    /// any value matches too).
    Not(Box<Clause>),
    /// Several values where a clause takes one (quantities, dates): any of them.
    AnyOf(Vec<Clause>),
}

impl Clause {
    /// The parameter the clause is about (`None` for several).
    pub fn name(&self) -> Option<&str> {
        match self {
            Clause::Token { name, .. }
            | Clause::Text { name, .. }
            | Clause::Date { name, .. }
            | Clause::Reference { name, .. }
            | Clause::Quantity { name, .. }
            | Clause::Contains { name, .. }
            | Clause::Exact { name, .. }
            | Clause::Below { name, .. }
            | Clause::Missing { name, .. } => Some(name),
            Clause::Not(inner) => inner.name(),
            Clause::AnyOf(_) => None,
        }
    }
}

/// `_summary` / `_elements` (R4 §3.1.1.5.5, §3.1.1.5.6): which elements of each match to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subset {
    /// `_summary=true`: the elements marked isSummary.
    Summary,
    /// `_summary=text`: text, id, meta (and resourceType).
    Text,
    /// `_summary=data`: everything but text.
    Data,
    /// `_elements=a,b`: those top-level elements, and id, meta, resourceType.
    Elements(Vec<String>),
}

/// `_total` (R4 §3.1.1.5.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Total {
    /// `accurate` (and `estimate`): the Bundle's `total` is the number of matches.
    #[default]
    Accurate,
    /// `none`: no `total`, and no count is run.
    None,
}

/// A chained parameter, one level (`subject:Patient.name=peter`): resolved by a search of
/// `target` with `param=value` under the caller's own grant, then a reference clause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    /// The reference parameter of the searched type.
    pub name: String,
    pub target: String,
    pub param: String,
    pub value: String,
}

/// A reverse chain, one level (`_has:Observation:patient:code=1234-5`): resources of the
/// searched type that `source` resources matching `param=value` reference through `reference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Has {
    pub source: String,
    pub reference: String,
    pub param: String,
    pub value: String,
}

/// `_include` / `_revinclude` (`Source:param`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Include {
    pub source: String,
    pub param: String,
    /// `:iterate`: applied once more to what the first round included.
    pub iterate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
    pub count: usize,
    pub offset: usize,
    /// The first sort key: parameter name and descending.
    pub sort: Option<(String, bool)>,
    pub summary_count: bool,
    /// Unknown parameters that were ignored (reported in the Bundle).
    pub ignored: Vec<String>,
    /// Granular-scope clause groups (see [`to_sql`]).
    #[serde(default)]
    pub filters: Vec<Vec<Clause>>,
    /// `_include=Source:param` (and `_include:iterate`): resources the results reference.
    #[serde(default)]
    pub includes: Vec<(String, String)>,
    /// `_revinclude=Source:param`: resources that reference the results.
    #[serde(default)]
    pub revincludes: Vec<(String, String)>,
    #[serde(default)]
    pub total: Total,
    /// The rarer parts, boxed to keep a `Search` small.
    #[serde(default)]
    pub more: Box<More>,
}

/// The rarer parts of a search.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct More {
    /// Further sort keys (`_sort=status,-date`), in order.
    pub sort_more: Vec<(String, bool)>,
    /// `_include:iterate` and `_revinclude:iterate` (one more round over what was included);
    /// `true` for a revinclude.
    pub iterate: Vec<(Include, bool)>,
    pub subset: Option<Subset>,
    /// Chained parameters not yet resolved; a search that still has some matches nothing.
    pub chains: Vec<Chain>,
    /// `_has` not yet resolved; likewise.
    pub has: Vec<Has>,
    /// Only resources whose id sorts after this one (keyset paging, for bulk export: a
    /// resource that changes mid-export cannot shift the pages after it). Not a search
    /// parameter; set by code, with the default order by id.
    #[serde(default)]
    pub after_id: Option<String>,
}

impl Search {
    /// Every sort key in order: (parameter, descending).
    pub fn sort_keys(&self) -> impl Iterator<Item = &(String, bool)> {
        self.sort.iter().chain(self.more.sort_more.iter())
    }

    /// Whether chains or `_has` are still to be resolved.
    pub fn unresolved(&self) -> bool {
        !self.more.chains.is_empty() || !self.more.has.is_empty()
    }
}

/// Most keys of `_sort`.
pub const MAX_SORT: usize = 3;
/// Most element names of `_elements`.
pub const MAX_ELEMENTS: usize = 30;

fn split_prefix(v: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("lt", Prefix::Lt),
        ("gt", Prefix::Gt),
        ("le", Prefix::Le),
        ("ge", Prefix::Ge),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
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
/// unknown parameter is an error; otherwise it is ignored and reported. `ap` dates are taken
/// relative to the Unix time `now` (seconds), or to the date itself (no widening) without one.
pub fn parse(resource_type: &str, pairs: &[(String, String)], strict: bool) -> Result<Search, SearchError> {
    parse_at(resource_type, pairs, strict, None)
}

/// [`parse`], with the time `ap` dates are approximated against.
pub fn parse_at(resource_type: &str, pairs: &[(String, String)], strict: bool, now: Option<i64>) -> Result<Search, SearchError> {
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
        total: Total::Accurate,
        more: Box::default(),
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
                let keys: Vec<&str> = value.split(',').collect();
                if keys.len() > MAX_SORT {
                    return Err(SearchError::TooComplex);
                }
                for key in keys {
                    let (field, desc) = key.strip_prefix('-').map_or((key, false), |f| (f, true));
                    let ok = field == "_id" || params::find(resource_type, field).is_some_and(|p| matches!(p.kind, Kind::Date | Kind::String | Kind::Token));
                    if !ok {
                        return Err(bad("sort by _id, a token, date or string parameter"));
                    }
                    let sort_key = (field.to_owned(), desc);
                    if search.sort.is_none() {
                        search.sort = Some(sort_key);
                    } else {
                        search.more.sort_more.push(sort_key);
                    }
                }
                continue;
            }
            "_summary" => {
                let subset = match value.as_str() {
                    "count" => {
                        search.summary_count = true;
                        None
                    }
                    "true" => Some(Subset::Summary),
                    "text" => Some(Subset::Text),
                    "data" => Some(Subset::Data),
                    "false" => None,
                    _ => return Err(bad("true, text, data, count or false")),
                };
                if subset.is_some() && search.more.subset.is_some() {
                    return Err(bad("one of _summary and _elements"));
                }
                search.more.subset = subset;
                continue;
            }
            "_elements" => {
                let names: Vec<String> = value.split(',').map(|n| n.trim().to_owned()).collect();
                let is_name = |n: &String| n.starts_with(|c: char| c.is_ascii_alphabetic()) && n.chars().all(|c| c.is_ascii_alphanumeric());
                if names.len() > MAX_ELEMENTS || !names.iter().all(is_name) {
                    return Err(bad("a list of top-level element names"));
                }
                if search.more.subset.is_some() {
                    return Err(bad("one of _summary and _elements"));
                }
                search.more.subset = Some(Subset::Elements(names));
                continue;
            }
            "_total" => {
                search.total = match value.as_str() {
                    "none" => Total::None,
                    "accurate" | "estimate" => Total::Accurate,
                    _ => return Err(bad("none, estimate or accurate")),
                };
                continue;
            }
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate") => true,
                    Some(_) => return Err(bad("the only modifier of _include and _revinclude is :iterate")),
                };
                // Source:param[:Target]; the parameter must be a reference.
                let mut parts = value.split(':');
                let (Some(source), Some(param_name)) = (parts.next(), parts.next()) else { return Err(bad("Source:parameter")) };
                let param =
                    params::find(source, param_name).filter(|p| p.kind == Kind::Reference).ok_or_else(|| bad("a reference parameter of a served type"))?;
                let rev = name == "_revinclude";
                if iterate {
                    search.more.iterate.push((Include { source: source.to_owned(), param: param.name.to_owned(), iterate: true }, rev));
                } else if !rev {
                    if source != resource_type {
                        return Err(bad("_include names a parameter of the searched type (or use _include:iterate)"));
                    }
                    search.includes.push((source.to_owned(), param.name.to_owned()));
                } else {
                    search.revincludes.push((source.to_owned(), param.name.to_owned()));
                }
                if search.includes.len() + search.revincludes.len() + search.more.iterate.len() > 4 {
                    return Err(SearchError::TooComplex);
                }
                continue;
            }
            "_has" => {
                // _has:Source:reference:param=value, one level.
                let mut parts = key.splitn(4, ':').skip(1);
                let (Some(source), Some(reference), Some(param)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(bad("_has:Type:reference:parameter"));
                };
                if param.starts_with("_has") || param.contains('.') {
                    return Err(bad("_has is served one level deep"));
                }
                let ok = params::find(source, reference).is_some_and(|p| p.kind == Kind::Reference);
                if !ok {
                    return Err(bad("_has names a reference parameter of a served type"));
                }
                search.more.has.push(Has { source: source.to_owned(), reference: reference.to_owned(), param: param.to_owned(), value: value.clone() });
                if search.more.chains.len() + search.more.has.len() > MAX_CHAINS {
                    return Err(SearchError::TooComplex);
                }
                continue;
            }
            "_format" | "_pretty" => continue,
            _ => {}
        }
        if let Some(chain) = chain_of(resource_type, key, value)? {
            search.more.chains.push(chain);
            if search.more.chains.len() + search.more.has.len() > MAX_CHAINS {
                return Err(SearchError::TooComplex);
            }
            continue;
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
        let lower = || values.iter().map(|v| v.to_lowercase()).collect::<Vec<_>>();
        let owned = || values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
        let clause = match (param.kind, modifier) {
            (_, Some("missing")) => match value.as_str() {
                "true" => Clause::Missing { name, missing: true },
                "false" => Clause::Missing { name, missing: false },
                _ => return Err(bad(":missing takes true or false")),
            },
            (Kind::Token, None) => token(name, &values),
            (Kind::Token, Some("not")) => Clause::Not(Box::new(token(name, &values))),
            (Kind::Token, Some("text")) => Clause::Text { name, any_of: lower(), exact: false },
            (Kind::String, None) => Clause::Text { name, any_of: lower(), exact: false },
            (Kind::String, Some("exact")) => Clause::Exact { name, any_of: owned() },
            (Kind::String, Some("contains")) => Clause::Contains { name, any_of: lower() },
            (Kind::Date, None) => {
                let mut dates = Vec::new();
                for v in &values {
                    let (prefix, date) = split_prefix(v);
                    let (lo, hi) = date_range(date).ok_or_else(|| bad("a FHIR date such as 2020, 2020-05 or 2020-05-01"))?;
                    let (lo, hi) = if prefix == Prefix::Ap { approximate(&lo, &hi, now) } else { (lo, hi) };
                    dates.push(Clause::Date { name: name.clone(), prefix, lo, hi });
                }
                one_or_any(dates)
            }
            (Kind::Reference, None) => Clause::Reference {
                name: name.clone(),
                any_of: values
                    .iter()
                    .map(|v| if v.contains('/') { (*v).to_owned() } else { format!("{}/{v}", reference_target(resource_type, &name)) })
                    .collect(),
            },
            (Kind::Reference, Some(t)) if params::is_served(t) => {
                // The type modifier (`subject:Patient=123`): a bare id of that type.
                Clause::Reference { name, any_of: values.iter().map(|v| if v.contains('/') { (*v).to_owned() } else { format!("{t}/{v}") }).collect() }
            }
            // A uri matches exactly (R4 §3.1.1.5.13), like a token without a system; `:below`
            // and `:above` by prefix either way.
            (Kind::Uri, None) => Clause::Token { name, any_of: values.iter().map(|v| (None, Some((*v).to_owned()))).collect() },
            (Kind::Uri, Some("below")) => Clause::Below { name, any_of: values.iter().map(|v| v.trim_end_matches('/').to_owned()).collect() },
            (Kind::Uri, Some("above")) => Clause::Token { name, any_of: values.iter().flat_map(|v| uri_ancestors(v)).map(|a| (None, Some(a))).collect() },
            (Kind::Quantity | Kind::Number, None) => {
                let mut quantities = Vec::new();
                for v in &values {
                    let (prefix, rest) = split_prefix(v);
                    let mut parts = rest.splitn(3, '|');
                    // Finite numbers only: SQLite stores a NaN as NULL and JSON has no infinity.
                    let number =
                        parts.next().and_then(|n| n.parse::<f64>().ok()).filter(|n| n.is_finite()).ok_or_else(|| bad("[prefix]number[|system|code]"))?;
                    let sys = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                    let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                    quantities.push(Clause::Quantity { name: name.clone(), prefix, value: number, sys, code });
                }
                one_or_any(quantities)
            }
            (_, Some(m @ ("above" | "below"))) => {
                return Err(bad(&format!(":{m} needs a terminology (tokens) or a hierarchy (references), which this server does not have")))
            }
            (_, Some(m)) => return Err(bad(&format!("the modifier :{m} is not supported for this parameter"))),
        };
        search.clauses.push(clause);
    }
    if to_sql(&search).select_params.len() > MAX_BOUND {
        return Err(SearchError::TooComplex);
    }
    Ok(search)
}

/// The modifiers [`parse`] accepts on a parameter of `kind`, besides a reference's type
/// modifier (`subject:Patient`), in the CapabilityStatement's words. `modifiers_match_the_parser`
/// (search tests) holds this list and the parser's `match` together.
pub fn modifiers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Token => &["missing", "not", "text"],
        Kind::String => &["missing", "exact", "contains"],
        Kind::Uri => &["missing", "below", "above"],
        Kind::Reference | Kind::Date | Kind::Quantity | Kind::Number => &["missing"],
    }
}

/// The comparison prefixes [`parse`] accepts on a value of `kind` (R4 §3.1.1.4.2).
pub fn prefixes(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Date | Kind::Quantity | Kind::Number => &["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"],
        Kind::Token | Kind::String | Kind::Uri | Kind::Reference => &[],
    }
}

/// Most path steps of a uri `:above` value (each becomes two bound values).
const MAX_URI_STEPS: usize = 8;

/// A uri and the uris above it in the path, each with and without a trailing `/`
/// (`http://a.org/fhir/ValueSet/1` → `…/ValueSet/1`, `…/ValueSet`, `…/fhir`, `http://a.org`),
/// at most [`MAX_URI_STEPS`] steps up and never into the scheme.
pub fn uri_ancestors(uri: &str) -> Vec<String> {
    let root = uri.find("://").map_or(0, |i| i + 3);
    let mut out = Vec::new();
    let mut current = uri.trim_end_matches('/');
    while current.len() > root && out.len() < 2 * MAX_URI_STEPS {
        out.push(current.to_owned());
        out.push(format!("{current}/"));
        match current[root..].rfind('/') {
            Some(i) => current = current[..root + i].trim_end_matches('/'),
            None => break,
        }
    }
    out
}

/// Most chained and `_has` parameters in one search (each costs a search of its own).
pub const MAX_CHAINS: usize = 2;

fn token(name: String, values: &[&str]) -> Clause {
    Clause::Token {
        name,
        any_of: values
            .iter()
            .map(|v| match v.split_once('|') {
                Some((sys, code)) => (Some(sys.to_owned()), Some(code.to_owned()).filter(|c| !c.is_empty())),
                None => (None, Some((*v).to_owned())),
            })
            .collect(),
    }
}

fn one_or_any(mut clauses: Vec<Clause>) -> Clause {
    if clauses.len() == 1 {
        clauses.remove(0)
    } else {
        Clause::AnyOf(clauses)
    }
}

/// `name[:Type].param=value` as a chain, when `name` is a reference parameter of the type.
fn chain_of(resource_type: &str, key: &str, value: &str) -> Result<Option<Chain>, SearchError> {
    let Some((head, param)) = key.split_once('.') else { return Ok(None) };
    let (name, typed) = head.split_once(':').map_or((head, None), |(n, t)| (n, Some(t)));
    let Some(reference) = params::find(resource_type, name).filter(|p| p.kind == Kind::Reference) else { return Ok(None) };
    let bad = |why: &str| SearchError::BadValue(key.to_owned(), why.to_owned());
    if param.is_empty() || param.contains('.') || param.starts_with("_has") {
        return Err(bad("chains are served one level deep"));
    }
    let inner_name = param.split(':').next().unwrap_or_default();
    let target = match typed {
        Some(t) if params::is_served(t) => t.to_owned(),
        Some(_) => return Err(bad("the type modifier names a served resource type")),
        None => {
            let candidates: Vec<&str> = targets_of(resource_type, reference.name).into_iter().filter(|t| params::find(t, inner_name).is_some()).collect();
            match candidates.as_slice() {
                [one] => (*one).to_owned(),
                [] => return Err(bad("no type this reference can point to has that parameter")),
                _ => return Err(bad("the reference can point to several types with that parameter: name one (e.g. subject:Patient.name)")),
            }
        }
    };
    Ok(Some(Chain { name: reference.name.to_owned(), target, param: param.to_owned(), value: value.to_owned() }))
}

/// The types a reference parameter can point to.
fn targets_of(resource_type: &str, name: &str) -> Vec<&'static str> {
    params::find(resource_type, name).map(|p| p.targets.to_vec()).unwrap_or_default()
}

/// The range of an `ap` date: widened on both sides by 10% of the gap between the date and
/// `now` (R4 §3.1.1.4.2: "the recommended value for the approximation is 10% of ... the gap
/// between now and the date"). Without `now`, the range itself.
fn approximate(lo: &str, hi: &str, now: Option<i64>) -> (String, String) {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp());
    let (Some(now), Some(l), Some(h)) = (now, parse(lo), parse(hi)) else { return (lo.to_owned(), hi.to_owned()) };
    let gap = if now < l {
        l - now
    } else if now > h {
        now - h
    } else {
        0
    };
    let widen = gap / 10;
    let fmt = |t: i64, fallback: &str| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .filter(|s| s.len() == 20 && s.as_bytes()[0].is_ascii_digit())
            .unwrap_or_else(|| fallback.to_owned())
    };
    (fmt(l.saturating_sub(widen), "0000-01-01T00:00:00Z"), fmt(h.saturating_add(widen), "9999-12-31T23:59:59Z"))
}

/// The type a bare id in a reference parameter refers to: its one target, else by name.
fn reference_target(resource_type: &str, name: &str) -> &'static str {
    if let [one] = targets_of(resource_type, name).as_slice() {
        return one;
    }
    match name {
        "encounter" => "Encounter",
        _ => "Patient",
    }
}
