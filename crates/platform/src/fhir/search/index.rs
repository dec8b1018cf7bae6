//! The index rows a resource contributes to search: one per value at each search parameter's
//! paths (tokens, strings, dates as ranges, references, quantities).

use super::super::fhirpath;
use super::super::params::{self, Kind, Param};
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of the rows [`index`] makes for a resource. Bump it by hand with any change to
/// this file (or to the FHIRPath evaluation) that changes which rows a stored resource gets:
/// partitions indexed with another version re-index themselves (see
/// [`crate::schema::index_version`], README "Upgrading"). The parameter table has its own
/// digest, written by the generator.
pub const INDEXER_VERSION: u32 = 2;

/// The values `param`'s expression selects in `resource` (see [`fhirpath`]).
pub fn values_of<'a>(resource: &'a Value, param: &Param) -> Vec<fhirpath::Item<'a>> {
    fhirpath::compiled(param.expression).map(|e| e.evaluate(resource)).unwrap_or_default()
}

/// The `reference` strings of selected values (Reference elements).
pub fn references_at<'a>(items: &[fhirpath::Item<'a>]) -> Vec<&'a str> {
    items.iter().filter_map(|i| i.value.get("reference").and_then(Value::as_str)).collect()
}

/// [`values_of`], keeping references whose type cannot be told (see
/// [`fhirpath::Expr::evaluate_keeping_untyped`]).
pub fn values_keeping_untyped<'a>(resource: &'a Value, param: &Param) -> Vec<fhirpath::Item<'a>> {
    fhirpath::compiled(param.expression).map(|e| e.evaluate_keeping_untyped(resource)).unwrap_or_default()
}

/// `Type/id` references found at `source`'s reference parameter `name`.
pub fn references(resource: &Value, source: &str, name: &str) -> Vec<String> {
    let Some(param) = params::find(source, name).filter(|p| p.kind == Kind::Reference) else { return Vec::new() };
    references_at(&values_of(resource, &param)).into_iter().filter(|r| r.split('/').count() == 2).map(str::to_owned).collect()
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
            let with_seconds = if s.len() >= 16 && s.as_bytes().get(16) != Some(&b':') { format!("{}:00{}", &s[..16], &s[16..]) } else { s.to_owned() };
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
            // `:text` (search-helper): the lower-cased Coding.display, CodeableConcept.text or
            // Identifier.type.text rides along in `text`.
            let display = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_lowercase);
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                for c in codings {
                    let code = c.get("code").and_then(Value::as_str).map(str::to_owned);
                    let sys = c.get("system").and_then(Value::as_str).map(str::to_owned);
                    out.push(entry(IndexEntry { sys, code, text: display(c.get("display")), ..Default::default() }));
                }
            } else if o.contains_key("value") {
                let type_text = display(o.get("type").and_then(|t| t.get("text")));
                out.push(entry(IndexEntry { sys: text("system"), code: text("value"), text: type_text, ..Default::default() }));
            } else if o.contains_key("code") {
                out.push(entry(IndexEntry { sys: text("system"), code: text("code"), text: display(o.get("display")), ..Default::default() }));
            }
            if let Some(cc_text) = display(o.get("text")) {
                out.push(entry(IndexEntry { text: Some(cc_text), ..Default::default() }));
            }
        }
        // The lower-cased text for the default and `:contains` matches, the value as written
        // (in `code`) for `:exact`.
        (Kind::String, Value::String(s)) => out.push(entry(IndexEntry { text: Some(s.to_lowercase()), code: Some(s.clone()), ..Default::default() })),
        // A HumanName or an Address: each of its parts (R4 §3.1.1.5.10).
        (Kind::String, Value::Object(o)) => {
            for part in ["text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"] {
                let values = match o.get(part) {
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                    Some(Value::String(s)) => vec![s.as_str()],
                    _ => Vec::new(),
                };
                out.extend(values.into_iter().map(|s| entry(IndexEntry { text: Some(s.to_lowercase()), code: Some(s.to_owned()), ..Default::default() })));
            }
        }
        (Kind::Uri, Value::String(uri)) => out.push(entry(IndexEntry { code: Some(uri.clone()), ..Default::default() })),
        (Kind::Number, Value::Number(n)) => {
            if let Some(num) = n.as_f64() {
                out.push(entry(IndexEntry { num: Some(num), ..Default::default() }));
            }
        }
        (Kind::Date, Value::String(s)) => {
            if let Some((lo, hi)) = date_range(s) {
                out.push(entry(IndexEntry { date_lo: Some(lo), date_hi: Some(hi), ..Default::default() }));
            }
        }
        // A Timing: its events.
        (Kind::Date, Value::Object(timing)) if timing.contains_key("event") => {
            for event in timing.get("event").and_then(Value::as_array).into_iter().flatten() {
                index_value(param, event, out);
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
        // A canonical URL.
        (Kind::Reference, Value::String(canonical)) => out.push(entry(IndexEntry { reference: Some(canonical.clone()), ..Default::default() })),
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
        for item in values_of(resource, param) {
            index_value(param, item.value, &mut out);
        }
    }
    out
}
