//! Checks on incoming resources (R4 §3.1.0.1 "Resource Validation"): a JSON object of a
//! served type, matching the URL, a valid id, not too large, `meta.versionId` /
//! `meta.lastUpdated` left to the server, and the content conforming to its R4
//! StructureDefinition: every element known, its cardinality (one value or a JSON array,
//! required elements present, one type of a choice `[x]`), its JSON type and the lexical form of
//! its primitive type, recursing into datatypes, BackboneElements and contained resources.
//!
//! Unknown elements are refused: R4 JSON (<https://hl7.org/fhir/R4/json.html>) lets an
//! application ignore unknown properties "but may also choose not to", and storing what the
//! server cannot index or check would be accepting content it does not understand. R4 defines
//! `Prefer: handling` for search parameters only (search.html §3.1.1.4), not for resource bodies.
//! Not checked: terminology bindings, invariants (FHIRPath constraints), reference targets,
//! profiles in `meta.profile`.

use super::outcome::IssueType;
use super::params;
use crate::users::is_fhir_id;
use serde_json::{json, Map, Value};

/// Largest resource accepted (a Durable Object SQLite row holds at most 2 MB).
pub const MAX_RESOURCE_BYTES: usize = 1024 * 1024;

/// Problems reported for one resource at most (the rest are counted, not listed).
pub const MAX_ISSUES: usize = 50;

/// One problem found in a resource: its `issue.code`, the FHIRPath of the element
/// (`Patient.name[0].given[1]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub code: IssueType,
    pub expression: String,
    pub diagnostics: String,
}

impl Issue {
    fn json(&self) -> Value {
        json!({ "severity": "error", "code": self.code.code(), "diagnostics": self.diagnostics, "expression": [self.expression] })
    }
}

/// An OperationOutcome listing `issues` (each with its FHIRPath in `expression`).
pub fn outcome_of(issues: &[Issue], prefix: &str) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = i.json();
            if !prefix.is_empty() {
                v["diagnostics"] = Value::String(format!("{prefix}{}", i.diagnostics));
            }
            v
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the resource is larger than 1 MiB")]
    TooLarge,
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a JSON object with a resourceType")]
    NotAResource,
    #[error("resourceType {0} does not match the URL")]
    WrongType(String),
    #[error("the resource id {0:?} does not match the URL")]
    WrongId(Option<String>),
    #[error("{0} is not a valid FHIR id")]
    BadId(String),
    #[error("the resource does not conform to its R4 definition: {}", summary(.0))]
    Structure(Vec<Issue>),
}

/// The first issue's diagnostics, and how many more there are.
pub fn summary(issues: &[Issue]) -> String {
    match issues {
        [] => String::new(),
        [one] => one.diagnostics.clone(),
        [first, rest @ ..] => format!("{} (and {} more)", first.diagnostics, rest.len()),
    }
}

impl Invalid {
    /// 400 for what is not a resource at all or fails the R4 definition ("failed basic FHIR
    /// validation rules"), 422 for a resource that cannot be processed (R4 §3.1.0.4 "update":
    /// 400 / 422).
    pub fn status(&self) -> u16 {
        match self {
            Invalid::TooLarge => 413,
            Invalid::NotJson(_) | Invalid::NotAResource | Invalid::WrongType(_) | Invalid::WrongId(_) | Invalid::Structure(_) => 400,
            Invalid::BadId(_) => 422,
        }
    }

    /// The OperationOutcome answering this refusal: one issue per problem for `Structure`.
    pub fn outcome(&self) -> Value {
        match self {
            Invalid::Structure(issues) => outcome_of(issues, ""),
            other => super::outcome::error(IssueType::Invalid, &other.to_string()),
        }
    }
}

/// Parses and checks a resource for `resource_type`; `id` is the URL's id (update) or `None`
/// (create, where any id in the body is ignored and replaced).
pub fn resource(body: &[u8], resource_type: &str, id: Option<&str>) -> Result<Value, Invalid> {
    if body.len() > MAX_RESOURCE_BYTES {
        return Err(Invalid::TooLarge);
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
    let Some(given_type) = value.get("resourceType").and_then(Value::as_str).map(str::to_owned) else {
        return Err(Invalid::NotAResource);
    };
    if given_type != resource_type || !params::is_served(&given_type) {
        return Err(Invalid::WrongType(given_type));
    }
    match (id, value.get("id").and_then(Value::as_str)) {
        (Some(url_id), Some(body_id)) if url_id == body_id => {}
        (Some(_), other) => return Err(Invalid::WrongId(other.map(str::to_owned))),
        (None, Some(body_id)) if !is_fhir_id(body_id) => return Err(Invalid::BadId(body_id.to_owned())),
        (None, _) => {}
    }
    structure(&value).map_err(Invalid::Structure)?;
    if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    Ok(value)
}

/// Checks a resource (a JSON object with a `resourceType`) against its R4 StructureDefinition:
/// `Ok` or every problem found (at most [`MAX_ISSUES`]), each naming its FHIRPath.
pub fn structure(resource: &Value) -> Result<(), Vec<Issue>> {
    let mut walk = Walk { issues: Vec::new(), more: 0 };
    walk.resource(resource, None);
    if walk.issues.is_empty() {
        return Ok(());
    }
    if walk.more > 0 {
        let more = walk.more;
        walk.issues.push(Issue {
            code: IssueType::TooCostly,
            expression: walk.issues[0].expression.split('.').next().unwrap_or_default().to_owned(),
            diagnostics: format!("{more} more problems are not listed"),
        });
    }
    Err(walk.issues)
}

/// The definitions, generated from the R4 StructureDefinitions.
mod table {
    use super::{Element, Kind, Type};

    const fn e(name: &'static str, ty: u16, card: u8, choice: u8) -> Element {
        Element { name, ty, card, choice }
    }

    const fn t(name: &'static str, kind: Kind, elements: &'static [Element]) -> Type {
        Type { name, kind, elements }
    }

    include!("structures_generated.rs");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Primitive,
    Complex,
    Resource,
    /// `Resource`: any resource, checked as its `resourceType` says.
    AnyResource,
}

/// A resource type, datatype or BackboneElement (named by its path, `Patient.contact`).
struct Type {
    name: &'static str,
    kind: Kind,
    /// Sorted by name; choice elements expanded (`valueQuantity`, `valueString`, …).
    elements: &'static [Element],
}

struct Element {
    /// The JSON property name.
    name: &'static str,
    /// Index of the element's type in `table::TYPES`.
    ty: u16,
    /// Bit 0: required (min 1); bit 1: a list (max `*`).
    card: u8,
    /// For a choice `[x]` element, the length of its base name (`value` of `valueQuantity`).
    choice: u8,
}

impl Element {
    fn required(&self) -> bool {
        self.card & 1 != 0
    }
    fn many(&self) -> bool {
        self.card & 2 != 0
    }
    fn ty(&self) -> &'static Type {
        &table::TYPES[self.ty as usize]
    }
    fn cardinality(&self) -> &'static str {
        ["0..1", "1..1", "0..*", "1..*"][self.card as usize & 3]
    }
    /// The name in FHIRPath and in the definition: `value[x]` for a choice.
    fn base(&self) -> &'static str {
        if self.choice > 0 {
            &self.name[..self.choice as usize]
        } else {
            self.name
        }
    }
}

fn type_named(name: &str) -> Option<&'static Type> {
    table::TYPES.binary_search_by(|t| t.name.cmp(name)).ok().map(|i| &table::TYPES[i])
}

/// Whether `name` is an R4 resource type (served or not: a Bundle or `contained` may hold any).
pub fn is_resource_type(name: &str) -> bool {
    type_named(name).is_some_and(|t| t.kind == Kind::Resource)
}

impl Type {
    fn element(&self, name: &str) -> Option<&'static Element> {
        self.elements.binary_search_by(|e| e.name.cmp(name)).ok().map(|i| &self.elements[i])
    }
}

struct Walk {
    issues: Vec<Issue>,
    more: usize,
}

impl Walk {
    fn report(&mut self, code: IssueType, expression: &str, diagnostics: String) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue { code, expression: expression.to_owned(), diagnostics });
        } else {
            self.more += 1;
        }
    }

    /// A resource at `at` (a nested one: `Bundle.entry[0].resource`), or at its type's name.
    fn resource(&mut self, value: &Value, at: Option<&str>) {
        let Some(object) = value.as_object() else {
            let path = at.unwrap_or("Resource");
            return self.report(IssueType::Structure, path, format!("{path} must be a JSON object (a resource)"));
        };
        let given = object.get("resourceType").and_then(Value::as_str);
        let Some(ty) = given.and_then(type_named).filter(|t| t.kind == Kind::Resource) else {
            let path = at.unwrap_or("Resource");
            let what = given.map_or("no resourceType".to_owned(), |t| format!("resourceType {t:?}, which is not an R4 resource type"));
            return self.report(IssueType::Structure, path, format!("{path} has {what}"));
        };
        self.object(object, ty, at.unwrap_or(ty.name), true);
    }

    fn object(&mut self, object: &Map<String, Value>, ty: &'static Type, path: &str, is_resource: bool) {
        if object.is_empty() {
            return self.report(IssueType::Value, path, format!("{path} is an empty object (R4 ele-1: an element has a value or children)"));
        }
        for (key, value) in object {
            if is_resource && key == "resourceType" {
                continue;
            }
            if let Some(name) = key.strip_prefix('_') {
                match ty.element(name).filter(|e| e.ty().kind == Kind::Primitive) {
                    Some(element) => self.primitive_extension(object, element, value, &format!("{path}.{}", element.base())),
                    None => {
                        self.report(IssueType::Structure, &format!("{path}.{key}"), format!("{key} is not the extension of a primitive element of {}", ty.name))
                    }
                }
                continue;
            }
            let Some(element) = ty.element(key) else {
                let child = format!("{path}.{key}");
                self.report(IssueType::Structure, &child, format!("{child} is not an element of {} in R4", ty.name));
                continue;
            };
            let child = format!("{path}.{}", element.base());
            match (value, element.many()) {
                (Value::Array(items), true) => {
                    // An empty array is taken as absent (clients send `"tag": []`); a required
                    // list is then reported missing.
                    let extensions = object.get(&format!("_{key}")).and_then(Value::as_array);
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{child}[{i}]");
                        // A null keeps the place of a value that only has an extension (`_given`).
                        let extended = extensions.and_then(|x| x.get(i)).is_some_and(Value::is_object);
                        if item.is_null() && element.ty().kind == Kind::Primitive && extended {
                            continue;
                        }
                        self.value(item, element.ty(), &at);
                    }
                }
                (Value::Array(_), false) => {
                    self.report(IssueType::Structure, &child, format!("{child} takes one value ({}), not an array", element.cardinality()));
                }
                (_, true) => {
                    self.report(IssueType::Structure, &child, format!("{child} is a list ({}): send a JSON array", element.cardinality()));
                }
                (_, false) => self.value(value, element.ty(), &child),
            }
        }
        self.cardinality(object, ty, path);
    }

    /// Required elements present, and one type at most for each choice.
    fn cardinality(&mut self, object: &Map<String, Value>, ty: &'static Type, path: &str) {
        let given = |v: Option<&Value>| v.is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()));
        let present = |e: &Element| given(object.get(e.name)) || given(object.get(&format!("_{}", e.name)));
        let mut done: Vec<&str> = Vec::new();
        for element in ty.elements {
            if element.choice > 0 {
                let base = element.base();
                if done.contains(&base) {
                    continue;
                }
                done.push(base);
                let group = ty.elements.iter().filter(|e| e.choice == element.choice && e.name.starts_with(base));
                let given: Vec<&str> = group.filter(|e| present(e)).map(|e| e.name).collect();
                let at = format!("{path}.{base}");
                if given.len() > 1 {
                    self.report(IssueType::Structure, &at, format!("{at} takes one type, not {}", given.join(" and ")));
                } else if given.is_empty() && element.required() {
                    self.report(IssueType::Required, &at, format!("{at}[x] is required ({})", element.cardinality()));
                }
            } else if element.required() && !present(element) {
                let at = format!("{path}.{}", element.name);
                self.report(IssueType::Required, &at, format!("{at} is required ({})", element.cardinality()));
            }
        }
    }

    /// `_name`: the id and extensions of a primitive (an object, or an array of objects and
    /// nulls lined up with the values).
    fn primitive_extension(&mut self, object: &Map<String, Value>, element: &Element, value: &Value, path: &str) {
        let Some(ty) = type_named("Element") else { return };
        match (value, element.many()) {
            (Value::Array(items), true) => {
                let values = object.get(element.name).and_then(Value::as_array).map_or(0, Vec::len);
                if items.len() != values && values > 0 {
                    self.report(IssueType::Structure, path, format!("_{} has {} entries for {values} values", element.name, items.len()));
                }
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    match item {
                        Value::Null => {}
                        Value::Object(o) => self.object(o, ty, &at, false),
                        _ => self.report(IssueType::Structure, &at, format!("_{}[{i}] must be an object or null", element.name)),
                    }
                }
            }
            (Value::Object(o), false) => self.object(o, ty, path, false),
            _ => self.report(IssueType::Structure, path, format!("_{} does not match the shape of {} ({})", element.name, element.name, element.cardinality())),
        }
    }

    fn value(&mut self, value: &Value, ty: &'static Type, path: &str) {
        match ty.kind {
            Kind::Primitive => {
                if let Some(problem) = primitive(value, ty.name) {
                    self.report(IssueType::Value, path, format!("{path} {problem}"));
                }
            }
            Kind::Complex => match value.as_object() {
                Some(object) => self.object(object, ty, path, false),
                None => self.report(IssueType::Structure, path, format!("{path} must be a JSON object (a {})", ty.name)),
            },
            Kind::AnyResource | Kind::Resource => self.resource(value, Some(path)),
        }
    }
}

/// What is wrong with `value` as the R4 primitive `ty` (<https://hl7.org/fhir/R4/datatypes.html#primitive>),
/// or `None`. The lexical rules that matter cheaply: JSON type, id, dates and times, code,
/// integer ranges, uri without whitespace, non-empty strings.
fn primitive(value: &Value, ty: &str) -> Option<String> {
    let number = |v: &Value| -> Option<i64> { v.as_i64().filter(|n| i32::try_from(*n).is_ok()) };
    match ty {
        "boolean" => (!value.is_boolean()).then(|| "must be a JSON boolean".into()),
        "decimal" => (!value.is_number()).then(|| "must be a JSON number (decimal)".into()),
        "integer" => number(value).is_none().then(|| "must be a JSON integer between -2147483648 and 2147483647".into()),
        "unsignedInt" => number(value).filter(|n| *n >= 0).is_none().then(|| "must be a JSON integer ≥ 0 (unsignedInt)".into()),
        "positiveInt" => number(value).filter(|n| *n >= 1).is_none().then(|| "must be a JSON integer ≥ 1 (positiveInt)".into()),
        _ => {
            let Some(s) = value.as_str() else {
                return Some(format!("must be a JSON string ({ty})"));
            };
            let ok = match ty {
                "id" => is_fhir_id(s),
                "code" => !s.is_empty() && s.split([' ', '\t', '\n', '\r']).all(|w| !w.is_empty()),
                "uri" | "url" | "canonical" => !s.is_empty() && !s.chars().any(char::is_whitespace),
                "uuid" => s.strip_prefix("urn:uuid:").is_some_and(is_uuid),
                "oid" => s.strip_prefix("urn:oid:").is_some_and(is_oid),
                "date" => dates::date(s),
                "dateTime" => dates::date_time(s),
                "instant" => dates::instant(s),
                "time" => dates::time(s),
                "base64Binary" => s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/= \t\r\n".contains(&b)),
                // string, markdown, xhtml: at least one character.
                _ => !s.is_empty(),
            };
            (!ok).then(|| format!("is not a valid {ty}: {s:?}"))
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36 && b.iter().enumerate().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

fn is_oid(s: &str) -> bool {
    let mut arcs = s.split('.');
    let first_ok = arcs.next().is_some_and(|a| matches!(a, "0" | "1" | "2"));
    let rest: Vec<&str> = arcs.collect();
    first_ok && !rest.is_empty() && rest.iter().all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a.len() == 1 || !a.starts_with('0')))
}

/// The R4 date, dateTime, instant and time forms (their regexes in datatypes.html).
mod dates {
    fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
        let head = s.get(..n).filter(|h| h.bytes().all(|b| b.is_ascii_digit()))?;
        Some((head.parse().ok()?, &s[n..]))
    }

    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`; what follows.
    fn partial_date(s: &str) -> Option<(usize, &str)> {
        let (year, mut rest) = digits(s, 4)?;
        if year == 0 {
            return None;
        }
        let mut parts = vec![year];
        while parts.len() < 3 {
            let Some(after) = rest.strip_prefix('-') else { break };
            let (n, after) = digits(after, 2)?;
            let max = if parts.len() == 1 { 12 } else { days_in_month(year, parts[1]) };
            if n == 0 || n > max {
                return None;
            }
            rest = after;
            parts.push(n);
        }
        Some((parts.len(), rest))
    }

    /// "Dates SHALL be valid dates" (R4 datatypes.html): no 30 February.
    fn days_in_month(year: u32, month: u32) -> u32 {
        match month {
            2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// `hh:mm:ss(.fff)`; what follows.
    fn clock(s: &str) -> Option<&str> {
        let (h, rest) = digits(s, 2)?;
        let (m, rest) = digits(rest.strip_prefix(':')?, 2)?;
        let (sec, mut rest) = digits(rest.strip_prefix(':')?, 2)?;
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        if let Some(fraction) = rest.strip_prefix('.') {
            let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            rest = &fraction[n..];
        }
        Some(rest)
    }

    fn zone(s: &str) -> bool {
        if s == "Z" {
            return true;
        }
        let Some(offset) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) else { return false };
        let Some((h, rest)) = digits(offset, 2) else { return false };
        let Some((m, rest)) = rest.strip_prefix(':').and_then(|r| digits(r, 2)) else { return false };
        rest.is_empty() && ((h <= 13 && m <= 59) || (h == 14 && m == 0))
    }

    pub fn date(s: &str) -> bool {
        partial_date(s).is_some_and(|(_, rest)| rest.is_empty())
    }

    pub fn date_time(s: &str) -> bool {
        match partial_date(s) {
            Some((_, "")) => true,
            Some((3, rest)) => rest.strip_prefix('T').and_then(clock).is_some_and(zone),
            _ => false,
        }
    }

    pub fn instant(s: &str) -> bool {
        matches!(partial_date(s), Some((3, rest)) if rest.strip_prefix('T').and_then(clock).is_some_and(zone))
    }

    pub fn time(s: &str) -> bool {
        clock(s).is_some_and(str::is_empty)
    }
}

/// The version in an `If-Match` header (`W/"3"` or `"3"`).
pub fn if_match_version(header: &str) -> Option<String> {
    let v = header.trim().trim_start_matches("W/").trim_matches('"');
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.to_owned())
}

/// A small instance of `resource_type` made from its R4 definition alone: its required
/// elements (the first type of a required choice), each primitive in a valid lexical form,
/// each Reference to `reference`, each datatype with at least one value. For the tests that
/// must cover every served type; [`structure`] accepts it (tested).
#[cfg(test)]
pub(crate) fn minimal(resource_type: &str, reference: &str) -> Value {
    let ty = type_named(resource_type).filter(|t| t.kind == Kind::Resource).expect("an R4 resource type");
    let mut value = minimal_of(ty, reference, 0);
    value["resourceType"] = json!(resource_type);
    value
}

#[cfg(test)]
fn minimal_of(ty: &'static Type, reference: &str, depth: usize) -> Value {
    let primitive = |name: &str| match name {
        "boolean" => json!(true),
        "decimal" | "integer" | "positiveInt" => json!(1),
        "unsignedInt" => json!(0),
        "date" => json!("2020-01-02"),
        "dateTime" => json!("2020-01-02T03:04:05Z"),
        "instant" => json!("2020-01-02T03:04:05.000Z"),
        "time" => json!("03:04:05"),
        "uri" | "url" | "canonical" => json!("http://example.org/fhir/x"),
        "oid" => json!("urn:oid:1.2.3"),
        "uuid" => json!("urn:uuid:7f2c1a3e-6a43-4c4e-9c1e-2b0b7d5f6a11"),
        "base64Binary" => json!("aGk="),
        "xhtml" => json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"),
        _ => json!("x"),
    };
    match (ty.kind, ty.name) {
        (Kind::Primitive, name) => return primitive(name),
        (Kind::AnyResource, _) => return json!({"resourceType": "Basic", "code": {"text": "x"}}),
        (Kind::Complex, "Reference") => return json!({ "reference": reference }),
        (Kind::Complex, "Extension") => return json!({"url": "http://example.org/fhir/x", "valueString": "x"}),
        _ => {}
    }
    let mut object = Map::new();
    let mut chosen: Vec<&str> = Vec::new();
    for element in ty.elements.iter().filter(|e| e.required()) {
        if element.choice > 0 {
            if chosen.contains(&element.base()) {
                continue;
            }
            chosen.push(element.base());
        }
        let one = minimal_of(element.ty(), reference, depth + 1);
        object.insert(element.name.to_owned(), if element.many() { json!([one]) } else { one });
    }
    if object.is_empty() && ty.kind == Kind::Complex {
        // ele-1: a datatype holds something; its first primitive child other than `id`.
        if let Some(e) = ty.elements.iter().find(|e| e.ty().kind == Kind::Primitive && e.name != "id" && e.choice == 0 && depth < 8) {
            let one = primitive(e.ty().name);
            object.insert(e.name.to_owned(), if e.many() { json!([one]) } else { one });
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_resource_matching_the_url_and_drops_server_managed_meta() {
        let v = resource(br#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"9","tag":[]}}"#, "Patient", Some("p1")).unwrap();
        assert!(v["meta"].get("versionId").is_none());
        assert!(v["meta"].get("tag").is_some());
        assert!(resource(br#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#, "Observation", None).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_matching_resource() {
        assert!(matches!(resource(b"{not json", "Patient", None), Err(Invalid::NotJson(_))));
        assert_eq!(resource(b"[1,2]", "Patient", None), Err(Invalid::NotAResource));
        assert_eq!(resource(br#"{"resourceType":"Observation"}"#, "Patient", None), Err(Invalid::WrongType("Observation".into())));
        assert_eq!(resource(br#"{"resourceType":"Patient","id":"p2"}"#, "Patient", Some("p1")), Err(Invalid::WrongId(Some("p2".into()))));
        assert_eq!(resource(br#"{"resourceType":"Patient"}"#, "Patient", Some("p1")), Err(Invalid::WrongId(None)));
        assert_eq!(resource(br#"{"resourceType":"Patient","id":"bad id"}"#, "Patient", None), Err(Invalid::BadId("bad id".into())));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(resource(format!(r#"{{"resourceType":"Patient","x":{deep}}}"#).as_bytes(), "Patient", None), Err(Invalid::NotJson(_))));
        assert_eq!(resource(&vec![b' '; MAX_RESOURCE_BYTES + 1], "Patient", None), Err(Invalid::TooLarge));
    }

    #[test]
    fn reads_if_match() {
        assert_eq!(if_match_version("W/\"3\""), Some("3".into()));
        assert_eq!(if_match_version("\"12\""), Some("12".into()));
        assert_eq!(if_match_version("W/\"x\""), None);
    }

    /// The `(code, expression)` of each issue found in `resource`.
    fn problems(resource: Value) -> Vec<(&'static str, String)> {
        match structure(&resource) {
            Ok(()) => Vec::new(),
            Err(issues) => issues.iter().map(|i| (i.code.code(), i.expression.clone())).collect(),
        }
    }

    fn one(code: &'static str, expression: &str) -> Vec<(&'static str, String)> {
        vec![(code, expression.to_owned())]
    }

    #[test]
    fn accepts_valid_r4_with_extensions_primitive_extensions_and_contained_resources() {
        let patient = json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"versionId": "2", "lastUpdated": "2024-01-02T03:04:05.678Z", "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jo</div>"},
            "extension": [{"url": "http://example.org/race", "extension": [{"url": "text", "valueString": "x"}]}],
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345", "period": {"start": "2001-05-06"}}],
            "active": true,
            "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", null], "_given": [null, {"extension": [{"url": "http://example.org/x", "valueCode": "masked"}]}]}],
            "gender": "male",
            "birthDate": "1974-12-25", "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
            "deceasedBoolean": false,
            "multipleBirthInteger": 2,
            "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}], "name": {"given": ["Bénédicte"]}}],
            "contained": [{"resourceType": "Organization", "id": "org", "name": "Clinic"}],
            "managingOrganization": {"reference": "#org"}
        });
        assert_eq!(problems(patient), Vec::new());
        let observation = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2019-03", "issued": "2019-03-01T10:00:00.5+01:00",
            "component": [{"code": {"text": "systolic"}, "valueQuantity": {"value": 120.5, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]
        });
        assert_eq!(problems(observation), Vec::new());
        // A required primitive given only as its extension (data-absent-reason) is present.
        assert_eq!(
            problems(
                json!({"resourceType": "Observation", "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}, "code": {"text": "x"}})
            ),
            Vec::new()
        );
    }

    #[test]
    fn names_each_missing_required_element() {
        assert_eq!(problems(json!({"resourceType": "Observation"})), vec![("required", "Observation.code".into()), ("required", "Observation.status".into())]);
        assert_eq!(
            problems(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "component": [{"code": {"text": "a"}}, {"valueString": "b"}]})
            ),
            one("required", "Observation.component[1].code")
        );
        // A required choice: one of its types.
        assert_eq!(
            problems(json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/p"}})),
            one("required", "MedicationRequest.medication")
        );
        let issues = structure(&json!({"resourceType": "Observation", "code": {"text": "x"}})).unwrap_err();
        assert_eq!(issues[0].diagnostics, "Observation.status is required (1..1)");
        assert_eq!(issues[0].code, IssueType::Required);
    }

    #[test]
    fn refuses_several_values_for_one_and_one_value_for_a_list() {
        let issues = structure(&json!({"resourceType": "Patient", "gender": ["male", "female"]})).unwrap_err();
        assert_eq!(
            issues,
            vec![Issue {
                code: IssueType::Structure,
                expression: "Patient.gender".into(),
                diagnostics: "Patient.gender takes one value (0..1), not an array".into()
            }]
        );
        assert_eq!(problems(json!({"resourceType": "Patient", "name": {"family": "x"}})), one("structure", "Patient.name"));
        assert_eq!(problems(json!({"resourceType": "Patient", "name": []})), Vec::new());
        assert_eq!(
            problems(
                json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "choice", "answerOption": [], "enableWhen": [{"question": "q", "operator": "exists", "answerBoolean": true}]}]})
            ),
            Vec::new()
        );
        assert_eq!(
            problems(
                json!({"resourceType": "Group", "type": "person", "actual": true, "characteristic": [{"code": {"text": "x"}, "valueBoolean": true, "exclude": false}], "member": []})
            ),
            Vec::new()
        );
        assert_eq!(problems(json!({"resourceType": "Patient", "link": [{"other": {"reference": "Patient/q"}}]})), one("required", "Patient.link[0].type"));
        assert_eq!(
            problems(
                json!({"resourceType": "Bundle", "type": "searchset", "link": [], "entry": [{"resource": {"resourceType": "Patient"}, "search": {"mode": "match"}}]})
            ),
            Vec::new()
        );
        assert_eq!(
            problems(
                json!({"resourceType": "CapabilityStatement", "status": "active", "date": "2024", "kind": "instance", "fhirVersion": "4.0.1", "format": []})
            ),
            one("required", "CapabilityStatement.format")
        );
        assert_eq!(problems(json!({"resourceType": "Patient", "name": [{"family": ["a", "b"]}]})), one("structure", "Patient.name[0].family"));
    }

    #[test]
    fn refuses_the_wrong_json_type() {
        assert_eq!(problems(json!({"resourceType": "Patient", "active": "yes"})), one("value", "Patient.active"));
        assert_eq!(problems(json!({"resourceType": "Patient", "birthDate": 19740101})), one("value", "Patient.birthDate"));
        assert_eq!(problems(json!({"resourceType": "Patient", "maritalStatus": "M"})), one("structure", "Patient.maritalStatus"));
        assert_eq!(problems(json!({"resourceType": "Patient", "multipleBirthInteger": 1.5})), one("value", "Patient.multipleBirth"));
        assert_eq!(problems(json!({"resourceType": "Patient", "name": [{"given": ["a", 7]}]})), one("value", "Patient.name[0].given[1]"));
        assert_eq!(problems(json!({"resourceType": "Patient", "name": [{"given": ["a", null]}]})), one("value", "Patient.name[0].given[1]"));
        assert_eq!(problems(json!({"resourceType": "Patient", "telecom": [{}]})), one("value", "Patient.telecom[0]"));
        let issues = structure(&json!({"resourceType": "Patient", "active": "yes"})).unwrap_err();
        assert_eq!(issues[0].diagnostics, "Patient.active must be a JSON boolean");
    }

    #[test]
    fn refuses_a_choice_of_the_wrong_type_or_of_two_types() {
        assert_eq!(problems(json!({"resourceType": "Patient", "deceasedString": "yes"})), one("structure", "Patient.deceasedString"));
        assert_eq!(problems(json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"})), one("structure", "Patient.deceased"));
        assert_eq!(problems(json!({"resourceType": "Patient", "deceasedDateTime": "yesterday"})), one("value", "Patient.deceased"));
        assert_eq!(
            problems(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "7"}})),
            one("value", "Observation.value.value")
        );
    }

    #[test]
    fn names_the_fhirpath_of_nested_backbone_and_datatype_problems() {
        let patient = json!({"resourceType": "Patient", "contact": [{"name": {"family": "a"}}, {"name": {"given": ["x", "y"], "period": {"start": "2020-13-01"}}, "relationship": [{"coding": [{"code": "N", "userSelected": "no"}]}]}]});
        assert_eq!(
            problems(patient),
            vec![("value", "Patient.contact[1].name.period.start".into()), ("value", "Patient.contact[1].relationship[0].coding[0].userSelected".into())]
        );
        // Through a contentReference (Questionnaire.item.item is a Questionnaire.item).
        let questionnaire =
            json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1"}]}]});
        assert_eq!(problems(questionnaire), one("required", "Questionnaire.item[0].item[0].type"));
        // Into a resource held by another (a Bundle entry, a contained resource).
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}, {"resource": {"resourceType": "Observation", "status": "final"}}]});
        assert_eq!(problems(bundle), one("required", "Bundle.entry[1].resource.code"));
        assert_eq!(problems(json!({"resourceType": "Patient", "contained": [{"resourceType": "Spaceship"}]})), one("structure", "Patient.contained[0]"));
    }

    #[test]
    fn refuses_unknown_elements_and_misplaced_primitive_extensions() {
        let issues = structure(&json!({"resourceType": "Patient", "nickname": "Jo"})).unwrap_err();
        assert_eq!(
            issues,
            vec![Issue {
                code: IssueType::Structure,
                expression: "Patient.nickname".into(),
                diagnostics: "Patient.nickname is not an element of Patient in R4".into()
            }]
        );
        assert_eq!(problems(json!({"resourceType": "Patient", "_name": {"id": "x"}})), one("structure", "Patient._name"));
        assert_eq!(problems(json!({"resourceType": "Patient", "_gender": "male"})), one("structure", "Patient.gender"));
        assert_eq!(problems(json!({"resourceType": "Patient", "_gender": {"foo": 1}})), one("structure", "Patient.gender.foo"));
        // SimpleQuantity prohibits comparator (max 0).
        assert_eq!(
            problems(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueRange": {"low": {"value": 1, "comparator": "<"}}})),
            one("structure", "Observation.value.low.comparator")
        );
    }

    #[test]
    fn checks_the_lexical_form_of_primitives() {
        let ok = |ty: &str, v: Value| primitive(&v, ty).is_none();
        for d in ["2018", "1973-06", "1905-08-23"] {
            assert!(ok("date", json!(d)) && ok("dateTime", json!(d)), "{d}");
        }
        assert!(ok("date", json!("2024-02-29")) && ok("date", json!("2000-02-29")) && ok("date", json!("2018-04-30")));
        for d in ["0000", "2018-13", "2018-02-32", "2023-02-29", "1900-02-29", "2018-04-31", "2018-1-01", "20180101", "2018-01-01T10:00:00Z"] {
            assert!(!ok("date", json!(d)), "{d}");
        }
        for d in ["2015-02-07T13:28:17-05:00", "2017-01-01T00:00:00.000Z", "2017-01-01T00:00:60+14:00"] {
            assert!(ok("dateTime", json!(d)) && ok("instant", json!(d)), "{d}");
        }
        for d in ["2015-02-07T13:28:17", "2015-02-07T13:28Z", "2015-02-07T24:00:00Z", "2015-02-07T13:28:17+15:00", "2015-02T13:28:17Z", "2015-02-07 13:28:17Z"]
        {
            assert!(!ok("dateTime", json!(d)), "{d}");
        }
        assert!(!ok("instant", json!("2015-02-07")));
        assert!(ok("time", json!("13:28:17.239")) && !ok("time", json!("13:28")));
        assert!(ok("id", json!("a-B.9")) && !ok("id", json!("a b")) && !ok("id", json!("x".repeat(65))));
        assert!(ok("code", json!("in progress")) && !ok("code", json!(" x")) && !ok("code", json!("a  b")) && !ok("code", json!("")));
        assert!(ok("positiveInt", json!(1)) && !ok("positiveInt", json!(0)) && ok("unsignedInt", json!(0)) && !ok("unsignedInt", json!(-1)));
        assert!(!ok("integer", json!(2_147_483_648_i64)) && ok("integer", json!(-2_147_483_648_i64)) && !ok("integer", json!("1")));
        assert!(ok("decimal", json!(1.5)) && !ok("decimal", json!("1.5")));
        assert!(ok("uuid", json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")) && !ok("uuid", json!("c757873d-ec9a-4326-a141-556f43239520")));
        assert!(ok("oid", json!("urn:oid:2.16.840.1.113883")) && !ok("oid", json!("urn:oid:3.1")) && !ok("oid", json!("urn:oid:1.02")));
        assert!(ok("uri", json!("http://loinc.org")) && !ok("uri", json!("http://a b")));
        assert!(ok("string", json!("x")) && !ok("string", json!("")) && !ok("string", json!(1)));
        assert!(ok("base64Binary", json!("aGk=")) && !ok("base64Binary", json!("a*b")));
    }

    #[test]
    fn lists_fifty_problems_at_most_and_counts_the_rest() {
        let names: Vec<Value> = (0..80).map(|_| json!({"family": 1})).collect();
        let issues = structure(&json!({"resourceType": "Patient", "name": names})).unwrap_err();
        assert_eq!(issues.len(), MAX_ISSUES + 1);
        assert_eq!(issues[MAX_ISSUES].diagnostics, "30 more problems are not listed");
    }

    #[test]
    fn a_create_or_update_answers_400_with_one_issue_per_problem() {
        let refused = resource(br#"{"resourceType":"Patient","gender":["male"],"birthDate":"1974-13-01"}"#, "Patient", None).unwrap_err();
        assert_eq!(refused.status(), 400);
        let outcome = refused.outcome();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            outcome["issue"][0],
            json!({"severity": "error", "code": "value", "diagnostics": "Patient.birthDate is not a valid date: \"1974-13-01\"", "expression": ["Patient.birthDate"]})
        );
        assert_eq!(outcome["issue"][1]["expression"], json!(["Patient.gender"]));
        assert_eq!(outcome["issue"][1]["code"], "structure");
    }

    #[test]
    fn the_table_knows_every_r4_resource_type_and_its_types_resolve() {
        assert!(is_resource_type("Patient") && is_resource_type("SubstanceSpecification") && !is_resource_type("HumanName") && !is_resource_type("Resource"));
        let resources = table::TYPES.iter().filter(|t| t.kind == Kind::Resource).count();
        // The 146 of R4 4.0.1, and SubscriptionStatus, which the package adds (from R4B).
        assert_eq!(resources, 147);
        for t in &table::TYPES {
            assert!(t.elements.windows(2).all(|w| w[0].name < w[1].name), "{} is sorted", t.name);
        }
        assert!(table::TYPES.windows(2).all(|w| w[0].name < w[1].name));
    }

    /// Every resource of the 40 Synthea R4 bundles (`../shared/fhir-data/synthea-r4`, or
    /// `$SMART_EDGE_DATA`) conforms: real data, as the server ingests it.
    #[test]
    fn every_synthea_bundle_validates_clean() {
        let dir = std::env::var_os("SMART_EDGE_DATA").map(std::path::PathBuf::from).unwrap_or_else(|| {
            let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            here.ancestors()
                .map(|a| a.join("shared/fhir-data/synthea-r4"))
                .find(|p| p.is_dir())
                .expect("the Synthea sample data in ../shared/fhir-data/synthea-r4 (or $SMART_EDGE_DATA)")
        });
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
        files.sort();
        assert_eq!(files.len(), 40, "{}", dir.display());
        let mut resources = 0;
        for file in files {
            let bundle: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!(structure(&bundle), Ok(()), "{}", file.display());
            resources += bundle["entry"].as_array().map_or(0, Vec::len);
        }
        assert!(resources > 8_000, "{resources} resources");
    }
}
