//! The FHIRPath subset the R4 search-parameter expressions use
//! (<https://hl7.org/fhirpath/N1/>): unions of paths from the resource type, with
//! `where(resolve() is Type)`, `where(element='literal')`, `ofType(Type)` / `as Type` (choice
//! elements such as `value[x]`), and `[n]`. Anything else is refused at compile time, and the
//! registry leaves such parameters out (see `scripts/gen-fhir-registry.mjs`).

use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Why an expression is outside the subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported FHIRPath at byte {at}: {why}")]
pub struct Unsupported {
    pub at: usize,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Child(String),
    /// `where(resolve() is Type)`: references to that type.
    ResolvesTo(String),
    /// `where(element='literal')`.
    Equals(String, String),
    /// `ofType(Type)`, `as(Type)`, `as Type`.
    OfType(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    root: String,
    steps: Vec<Step>,
}

/// A compiled expression: the union of its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    terms: Vec<Term>,
}

/// One value an expression selects, with its type when a choice element named it
/// (`valueQuantity` → `Quantity`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item<'a> {
    pub value: &'a Value,
    pub choice_type: Option<&'a str>,
}

struct Parser<'s> {
    s: &'s str,
    at: usize,
}

impl<'s> Parser<'s> {
    fn fail<T>(&self, why: &'static str) -> Result<T, Unsupported> {
        Err(Unsupported { at: self.at, why })
    }

    fn rest(&self) -> &'s str {
        &self.s[self.at..]
    }

    fn eat(&mut self, token: &str) -> bool {
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn spaces(&mut self) {
        while self.eat(" ") {}
    }

    fn ident(&mut self) -> Result<String, Unsupported> {
        let len = self.rest().find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(self.rest().len());
        if len == 0 || !self.rest().starts_with(|c: char| c.is_ascii_alphabetic()) {
            return self.fail("expected a name");
        }
        let name = self.rest()[..len].to_owned();
        self.at += len;
        Ok(name)
    }

    fn expect(&mut self, token: &str, why: &'static str) -> Result<(), Unsupported> {
        if self.eat(token) {
            Ok(())
        } else {
            self.fail(why)
        }
    }

    /// `term ('|' term)*`
    fn union(&mut self) -> Result<Vec<Term>, Unsupported> {
        let mut terms = vec![self.term()?];
        loop {
            self.spaces();
            if !self.eat("|") {
                return Ok(terms);
            }
            self.spaces();
            terms.push(self.term()?);
        }
    }

    /// `path` or `'(' path (' as ' Type)? ')'`, then more steps.
    fn term(&mut self) -> Result<Term, Unsupported> {
        let mut term = if self.eat("(") {
            self.spaces();
            let mut inner = self.term()?;
            self.spaces();
            if self.eat("as ") {
                self.spaces();
                inner.steps.push(Step::OfType(self.ident()?));
                self.spaces();
            }
            self.expect(")", "expected )")?;
            inner
        } else {
            let root = self.ident()?;
            if !root.starts_with(|c: char| c.is_ascii_uppercase()) {
                return self.fail("a path starts with a type name");
            }
            Term { root, steps: Vec::new() }
        };
        loop {
            if self.eat("[") {
                let len = self.rest().find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
                let index = self.rest()[..len].parse().or_else(|_| self.fail("expected an index"))?;
                self.at += len;
                self.expect("]", "expected ]")?;
                term.steps.push(Step::Index(index));
            } else if self.eat(".") {
                term.steps.push(self.step()?);
            } else {
                return Ok(term);
            }
        }
    }

    fn step(&mut self) -> Result<Step, Unsupported> {
        let name = self.ident()?;
        if !self.eat("(") {
            return Ok(Step::Child(name));
        }
        let step = match name.as_str() {
            "ofType" | "as" => Step::OfType(self.ident()?),
            "where" if self.eat("resolve() is ") => Step::ResolvesTo(self.ident()?),
            "where" => {
                let element = self.ident()?;
                self.expect("='", "expected ='literal'")?;
                let len = self.rest().find('\'').map_or_else(|| self.fail("unterminated literal"), Ok)?;
                let literal = self.rest()[..len].to_owned();
                self.at += len + 1;
                Step::Equals(element, literal)
            }
            _ => return self.fail("unsupported function"),
        };
        self.expect(")", "expected )")?;
        Ok(step)
    }
}

/// Compiles an expression of the subset.
pub fn compile(expression: &str) -> Result<Expr, Unsupported> {
    let mut parser = Parser { s: expression, at: 0 };
    let terms = parser.union()?;
    if parser.at != expression.len() {
        return parser.fail("unexpected text");
    }
    Ok(Expr { terms })
}

thread_local! {
    /// Compiled registry expressions, by address: each is compiled once per isolate.
    static COMPILED: RefCell<HashMap<(usize, usize), Rc<Expr>>> = RefCell::new(HashMap::new());
}

/// The compiled form of a registry expression (`None` if it is outside the subset, which the
/// registry's tests rule out).
pub fn compiled(expression: &'static str) -> Option<Rc<Expr>> {
    let key = (expression.as_ptr() as usize, expression.len());
    COMPILED.with(|cache| {
        if let Some(found) = cache.borrow().get(&key) {
            return Some(found.clone());
        }
        let expr = Rc::new(compile(expression).ok()?);
        cache.borrow_mut().insert(key, expr.clone());
        Some(expr)
    })
}

/// The R4 data types a choice element's name may end with (`value[x]` → `valueQuantity`).
const DATA_TYPES: &[&str] = &[
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "CodeableConcept",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Date",
    "DateTime",
    "Decimal",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "HumanName",
    "Id",
    "Identifier",
    "Instant",
    "Integer",
    "Markdown",
    "Meta",
    "Money",
    "Oid",
    "ParameterDefinition",
    "Period",
    "PositiveInt",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "String",
    "Time",
    "Timing",
    "TriggerDefinition",
    "UnsignedInt",
    "Uri",
    "Url",
    "UsageContext",
    "Uuid",
];

/// `Patient/1`, `https://x/fhir/Patient/1`, `Patient/1/_history/2` and the conditional
/// `Patient?identifier=…` name type `Patient`.
fn reference_type(reference: &str) -> Option<&str> {
    if let Some((path, _)) = reference.split_once('?') {
        return path.rsplit('/').next().filter(|t| t.starts_with(|c: char| c.is_ascii_uppercase()));
    }
    let mut segments: Vec<&str> = reference.split('/').collect();
    if segments.len() >= 4 && segments[segments.len() - 2] == "_history" {
        segments.truncate(segments.len() - 2);
    }
    let n = segments.len();
    (n >= 2).then(|| segments[n - 2]).filter(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
}

fn push_all<'a>(out: &mut Vec<Item<'a>>, value: &'a Value, choice_type: Option<&'a str>) {
    match value {
        Value::Array(items) => out.extend(items.iter().map(|value| Item { value, choice_type })),
        value => out.push(Item { value, choice_type }),
    }
}

impl Expr {
    /// The type names the terms start from (`Resource` for the common parameters).
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.root.as_str())
    }

    /// The values the expression selects in `resource`.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Item<'a>> {
        self.evaluate_as(resource, Resolve::Strict)
    }

    /// [`Self::evaluate`], but `where(resolve() is T)` also keeps the references whose type
    /// cannot be told (`Patient`, `patient/1`, …): for decisions that must fail closed, such
    /// as which compartment a resource belongs to, where the caller judges each reference.
    pub fn evaluate_keeping_untyped<'a>(&self, resource: &'a Value) -> Vec<Item<'a>> {
        self.evaluate_as(resource, Resolve::KeepUntyped)
    }

    fn evaluate_as<'a>(&self, resource: &'a Value, resolve: Resolve) -> Vec<Item<'a>> {
        let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let mut out = Vec::new();
        for term in &self.terms {
            if term.root != resource_type && term.root != "Resource" && term.root != "DomainResource" {
                continue;
            }
            let mut items = vec![Item { value: resource, choice_type: None }];
            for step in &term.steps {
                items = apply(step, items, resolve);
            }
            out.extend(items);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolve {
    Strict,
    KeepUntyped,
}

fn apply<'a>(step: &Step, items: Vec<Item<'a>>, resolve: Resolve) -> Vec<Item<'a>> {
    match step {
        Step::Child(name) => {
            let mut out = Vec::new();
            for item in items {
                let Value::Object(object) = item.value else { continue };
                if let Some(value) = object.get(name) {
                    push_all(&mut out, value, None);
                    continue;
                }
                // A choice element: `value` is `valueQuantity`, `valueString`, ….
                for (key, value) in object {
                    if let Some(suffix) = key.strip_prefix(name.as_str()).filter(|s| DATA_TYPES.contains(s)) {
                        push_all(&mut out, value, Some(suffix));
                    }
                }
            }
            out
        }
        Step::OfType(wanted) => items.into_iter().filter(|i| i.choice_type.is_some_and(|t| t.eq_ignore_ascii_case(wanted))).collect(),
        Step::ResolvesTo(wanted) => items
            .into_iter()
            .filter(|i| {
                let reference = i.value.get("reference").and_then(Value::as_str);
                let by_type = i.value.get("type").and_then(Value::as_str);
                match reference.and_then(reference_type).or(by_type) {
                    Some(found) => found == wanted,
                    None => resolve == Resolve::KeepUntyped && reference.is_some(),
                }
            })
            .collect(),
        Step::Equals(element, literal) => items.into_iter().filter(|i| i.value.get(element).and_then(Value::as_str) == Some(literal.as_str())).collect(),
        Step::Index(n) => items.into_iter().nth(*n).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(expression: &str, resource: &Value) -> Vec<Value> {
        compile(expression).unwrap().evaluate(resource).into_iter().map(|i| i.value.clone()).collect()
    }

    #[test]
    fn walks_paths_through_arrays() {
        let patient = json!({"resourceType": "Patient", "name": [{"given": ["A", "B"]}, {"given": ["C"]}]});
        assert_eq!(values("Patient.name.given", &patient), vec![json!("A"), json!("B"), json!("C")]);
        assert_eq!(values("Resource.id", &json!({"resourceType": "Patient", "id": "x"})), vec![json!("x")]);
        assert!(values("Observation.code", &patient).is_empty(), "a term for another type selects nothing");
    }

    #[test]
    fn choice_elements_by_type() {
        let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 5}, "effectiveDateTime": "2020", "valuesetX": 1});
        assert_eq!(values("(Observation.value.ofType(Quantity))", &obs), vec![json!({"value": 5})]);
        assert_eq!(values("(Observation.value as Quantity)", &obs), vec![json!({"value": 5})]);
        assert!(values("Observation.value.ofType(string)", &obs).is_empty());
        assert_eq!(values("Observation.effective", &obs), vec![json!("2020")]);
        assert_eq!(values("Observation.effective.ofType(dateTime)", &obs), vec![json!("2020")]);
    }

    #[test]
    fn where_filters_and_unions() {
        let obs = json!({"resourceType": "Observation",
            "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "https://x/fhir/Practitioner/d/_history/2"}, {"reference": "Patient/p2"}],
            "component": [{"code": {"text": "a"}}]});
        assert_eq!(values("Observation.subject.where(resolve() is Patient)", &obs), vec![json!({"reference": "Patient/p1"})]);
        assert_eq!(values("Observation.performer.where(resolve() is Practitioner)", &obs).len(), 1);
        let odd =
            json!({"resourceType": "Condition", "subject": [{"reference": "Patient?identifier=x|1"}, {"reference": "Patient"}, {"reference": "Group/g"}]});
        let expr = compile("Condition.subject.where(resolve() is Patient)").unwrap();
        assert_eq!(expr.evaluate(&odd).len(), 1, "a conditional reference names its type");
        assert_eq!(expr.evaluate_keeping_untyped(&odd).len(), 2, "an untyped reference is kept for fail-closed decisions");
        assert_eq!(values("Observation.subject | Observation.performer", &obs).len(), 3);
        let patient = json!({"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "e"}]});
        assert_eq!(values("Patient.telecom.where(system='email')", &patient), vec![json!({"system": "email", "value": "e"})]);
        let bundle = json!({"resourceType": "Bundle", "entry": [{"resource": {"id": "a"}}, {"resource": {"id": "b"}}]});
        assert_eq!(values("Bundle.entry[0].resource", &bundle), vec![json!({"id": "a"})]);
        assert_eq!(values("(Observation.component.code).text", &obs), vec![json!("a")]);
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        for bad in
            ["Patient.deceased.exists() and Patient.deceased != false", "Patient.name.first()", "patient.name", "Patient.", "(Patient.name", "Patient.x[a]", ""]
        {
            assert!(compile(bad).is_err(), "{bad}");
        }
    }
}
