//! Modifiers, prefixes, several values, sort keys, `_total`, `_summary`/`_elements`, chains and
//! `_has` (R4 §3.1.1.4, §3.1.1.5): parsed, and matched by the in-memory twin of the SQL over
//! index rows, with the SQL's bound values counted.

use super::*;
use crate::fhir::params::{self, Kind};
use serde_json::{json, Value};

/// 2026-12-02T00:00:00Z, the `now` `ap` dates are approximated against.
const NOW: i64 = 1_796_169_600;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn query(t: &str, list: &[(&str, &str)]) -> Search {
    let s = parse_at(t, &pairs(list), true, Some(NOW)).unwrap_or_else(|e| panic!("{list:?}: {e}"));
    let sql = to_sql(&s);
    assert_eq!(bound_slots(&sql.select), sql.select_params.len(), "{list:?}");
    assert_eq!(bound_slots(&sql.count), sql.count_params.len(), "{list:?}");
    s
}

fn refused(t: &str, list: &[(&str, &str)]) -> bool {
    matches!(parse_at(t, &pairs(list), true, Some(NOW)), Err(SearchError::BadValue(..)))
}

fn patients() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-01", "name": [{"family": "Smith", "given": ["Ann"]}],
            "identifier": [{"system": "urn:mrn", "value": "1", "type": {"text": "Medical record number"}}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1990", "name": [{"family": "Smithers", "given": ["Bob"]}]}),
        json!({"resourceType": "Patient", "id": "p3", "name": [{"family": "Óscar"}]}),
    ]
}

fn observations() -> Vec<Value> {
    let loinc = |code: &str, display: &str| json!({"system": "http://loinc.org", "code": code, "display": display});
    vec![
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"coding": [loinc("8302-2", "Body height")]},
            "effectiveDateTime": "2020-01-15", "valueQuantity": {"value": 170, "system": "http://unitsofmeasure.org", "code": "cm"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "amended", "code": {"coding": [loinc("29463-7", "Body weight")], "text": "Weight"},
            "effectiveDateTime": "2021-06-01", "valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"}}),
        json!({"resourceType": "Observation", "id": "o3", "status": "preliminary", "code": {"coding": [loinc("8302-2", "Body height")]},
            "effectivePeriod": {"start": "2019-12-01", "end": "2020-02-01"}}),
        json!({"resourceType": "Observation", "id": "o4", "code": {"text": "free text only"}, "effectiveDateTime": "2022"}),
        json!({"resourceType": "Observation", "id": "o5", "status": "final", "code": {"coding": [loinc("8302-2", "Body height")]}, "effectiveDateTime": "2023-03-03"}),
    ]
}

/// The ids among `resources` that `list` matches, in id order.
fn ids(resources: &[Value], list: &[(&str, &str)]) -> Vec<String> {
    let t = resources[0]["resourceType"].as_str().unwrap();
    let s = query(t, list);
    resources.iter().filter(|r| matches(&index(r), &s.clauses)).map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn missing_holds_for_every_kind() {
    let (p, o) = (patients(), observations());
    assert_eq!(ids(&p, &[("gender:missing", "true")]), ["p3"]);
    assert_eq!(ids(&p, &[("gender:missing", "false")]), ["p1", "p2"]);
    assert_eq!(ids(&p, &[("birthdate:missing", "true")]), ["p3"]);
    assert_eq!(ids(&p, &[("given:missing", "true")]), ["p3"]);
    assert_eq!(ids(&o, &[("value-quantity:missing", "true")]), ["o3", "o4", "o5"]);
    assert_eq!(ids(&o, &[("subject:missing", "false")]), Vec::<String>::new());
    assert!(refused("Patient", &[("gender:missing", "yes")]));
    let sql = to_sql(&query("Patient", &[("gender:missing", "true")]));
    assert!(sql.select.contains("NOT r.id IN (SELECT i.id FROM idx i WHERE i.type = ?1 AND i.name = 'gender' AND (1))"));
}

#[test]
fn not_matches_resources_without_a_matching_value_including_those_without_any() {
    let o = observations();
    assert_eq!(ids(&o, &[("status:not", "final")]), ["o2", "o3", "o4"]);
    assert_eq!(ids(&o, &[("code:not", "8302-2,29463-7")]), ["o4"]);
    assert_eq!(ids(&o, &[("code:not", "http://loinc.org|8302-2")]), ["o2", "o4"]);
    assert!(refused("Patient", &[("family:not", "smith")]), ":not is for tokens");
}

#[test]
fn text_matches_the_display_and_text_of_codes() {
    let (p, o) = (patients(), observations());
    assert_eq!(ids(&o, &[("code:text", "body")]), ["o1", "o2", "o3", "o5"]);
    assert_eq!(ids(&o, &[("code:text", "WEIGHT")]), ["o2"], "CodeableConcept.text, case-insensitive, from the start");
    assert_eq!(ids(&o, &[("code:text", "free")]), ["o4"]);
    assert_eq!(ids(&p, &[("identifier:text", "medical")]), ["p1"], "Identifier.type.text");
    assert_eq!(ids(&o, &[("code", "8302-2")]), ["o1", "o3", "o5"], "text rows do not answer code searches");
}

#[test]
fn exact_and_contains_on_strings() {
    let p = patients();
    assert_eq!(ids(&p, &[("family", "smith")]), ["p1", "p2"]);
    assert_eq!(ids(&p, &[("family:exact", "Smith")]), ["p1"]);
    assert_eq!(ids(&p, &[("family:exact", "smith")]), Vec::<String>::new(), "case counts");
    assert_eq!(ids(&p, &[("family:exact", "Óscar")]), ["p3"]);
    assert_eq!(ids(&p, &[("family:exact", "Oscar")]), Vec::<String>::new(), "accents count");
    assert_eq!(ids(&p, &[("family:contains", "MITH")]), ["p1", "p2"]);
    assert_eq!(ids(&p, &[("name:contains", "ithe")]), ["p2"]);
    assert_eq!(ids(&p, &[("name:contains", "ob,car")]), ["p2", "p3"]);
    assert!(refused("Observation", &[("code:contains", "x")]), ":contains is for strings");
    assert!(refused("Patient", &[("gender:exact", "male")]));
}

#[test]
fn above_and_below_where_meaningful_and_400_elsewhere() {
    for (k, v) in [("code:below", "8302-2"), ("code:above", "8302-2"), ("subject:below", "Patient/p1"), ("date:above", "2020")] {
        assert!(refused("Observation", &[(k, v)]), "{k}");
    }
    assert!(refused("Observation", &[("code:foo", "x")]));
    // Uri parameters keep the uri in `code`; :below and :above follow the path.
    let vs = |id: &str, url: &str| json!({"resourceType": "ValueSet", "id": id, "url": url});
    let sets = [vs("v1", "http://acme.org/fhir/ValueSet/123"), vs("v2", "http://acme.org/fhir/ValueSet/1234"), vs("v3", "http://other.org/ValueSet/1")];
    assert_eq!(ids(&sets, &[("url:below", "http://acme.org/fhir/")]), ["v1", "v2"]);
    assert_eq!(ids(&sets, &[("url:below", "http://acme.org/fhir/ValueSet/123")]), ["v1"], "1234 is not below 123");
    assert_eq!(ids(&sets, &[("url:above", "http://acme.org/fhir/ValueSet/123/_history/5")]), ["v1"]);
    assert_eq!(ids(&sets, &[("url:above", "http://acme.org/fhir")]), Vec::<String>::new());
    assert_eq!(uri_ancestors("http://a.org/fhir/"), ["http://a.org/fhir", "http://a.org/fhir/", "http://a.org", "http://a.org/"]);
    assert_eq!(uri_ancestors("urn:x"), ["urn:x", "urn:x/"]);
    let sql = to_sql(&query("ValueSet", &[("url:below", "http://acme.org/")]));
    assert!(sql.select.contains("(i.code = ? OR substr(i.code, 1, ?) = ?)"));
    let deep = format!("http://a.org/{}", ["x"; 40].join("/"));
    assert_eq!(uri_ancestors(&deep).len(), 2 * 8, "bounded");
}

#[test]
fn date_prefixes_sa_eb_ap_and_several_dates() {
    let o = observations();
    assert_eq!(ids(&o, &[("date", "sa2020-01")]), ["o2", "o4", "o5"], "starts after January 2020 ends");
    assert_eq!(ids(&o, &[("date", "eb2021")]), ["o1", "o3"], "ends before 2021 starts");
    assert_eq!(ids(&o, &[("date", "eb2020-01-15")]), Vec::<String>::new(), "o3's period runs past it");
    // ap: widened by 10% of the gap to now (about 216 days for 2021-01-01 seen from 2026-12).
    assert_eq!(ids(&o, &[("date", "ap2021-01-01")]), ["o2"]);
    let exact = parse("Observation", &pairs(&[("date", "ap2021-01-01")]), true).unwrap();
    assert!(!observations().iter().any(|r| matches(&index(r), &exact.clauses)), "no now, no widening");
    assert_eq!(ids(&o, &[("date", "ap2020-01-15")]), ["o1", "o3"]);
    assert_eq!(ids(&o, &[("date", "2020-01-15,2022")]), ["o1", "o4"], "several dates: any of them");
    assert_eq!(ids(&o, &[("date", "ge2020"), ("date", "lt2022")]), ["o1", "o2", "o3"], "repeated: all of them");
}

#[test]
fn several_quantities_and_their_prefixes() {
    let o = observations();
    assert_eq!(ids(&o, &[("value-quantity", "170,70")]), ["o1", "o2"]);
    assert_eq!(ids(&o, &[("value-quantity", "70|http://unitsofmeasure.org|kg,170|http://unitsofmeasure.org|kg")]), ["o2"]);
    assert_eq!(ids(&o, &[("value-quantity", "ap160")]), ["o1"], "within 10%");
    assert_eq!(ids(&o, &[("value-quantity", "ap150")]), Vec::<String>::new());
    assert_eq!(ids(&o, &[("value-quantity", "sa100")]), ["o1"]);
    assert_eq!(ids(&o, &[("value-quantity", "eb100,gt169")]), ["o1", "o2"]);
}

#[test]
fn sort_on_several_token_date_and_string_keys() {
    let o = observations();
    let s = query("Observation", &[("_sort", "status,-date")]);
    let mut keyed: Vec<(SortKey, String)> = o.iter().map(|r| (sort_key(&s, r["id"].as_str().unwrap(), r), r["id"].as_str().unwrap().to_owned())).collect();
    keyed.sort_by(|a, b| order(&s, (&a.0, &a.1), (&b.0, &b.1)));
    let sorted: Vec<&str> = keyed.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(sorted, ["o4", "o2", "o5", "o1", "o3"], "no status first, then amended, final (newest first), preliminary");
    let sql = to_sql(&s).select;
    assert!(sql.contains("ORDER BY (SELECT MIN(i.code) FROM idx i INDEXED BY idx_row_name WHERE i.type = r.type AND i.id = r.id AND i.name = 'status') ASC, (SELECT MIN(i.date_lo) FROM idx i INDEXED BY idx_row_name WHERE i.type = r.type AND i.id = r.id AND i.name = 'date') DESC, r.id"), "{sql}");
    assert_eq!(query("Patient", &[("_sort", "-_id,family")]).sort_keys().count(), 2);
    assert!(refused("Observation", &[("_sort", "value-quantity")]));
    assert!(matches!(parse("Observation", &pairs(&[("_sort", "status,date,code,_id")]), true), Err(SearchError::TooComplex)));
}

#[test]
fn total_none_runs_no_count() {
    let s = query("Observation", &[("_total", "none")]);
    assert_eq!(s.total, Total::None);
    let sql = to_sql(&s);
    assert_eq!((sql.count.as_str(), sql.count_params.len()), ("SELECT -1 AS n", 0));
    assert_eq!(query("Observation", &[("_total", "accurate")]).total, Total::Accurate);
    assert!(refused("Observation", &[("_total", "some")]));
}

#[test]
fn summary_and_elements_are_parsed_and_exclusive() {
    assert_eq!(query("Patient", &[("_summary", "true")]).more.subset, Some(Subset::Summary));
    assert_eq!(query("Patient", &[("_summary", "text")]).more.subset, Some(Subset::Text));
    assert_eq!(query("Patient", &[("_summary", "data")]).more.subset, Some(Subset::Data));
    assert_eq!(query("Patient", &[("_summary", "false")]).more.subset, None);
    assert!(query("Patient", &[("_summary", "count")]).summary_count);
    assert_eq!(query("Patient", &[("_elements", "name,gender")]).more.subset, Some(Subset::Elements(vec!["name".into(), "gender".into()])));
    assert!(refused("Patient", &[("_summary", "maybe")]));
    assert!(refused("Patient", &[("_elements", "name.family")]));
    assert!(refused("Patient", &[("_elements", "name"), ("_summary", "true")]));
}

#[test]
fn chains_and_has_are_parsed_one_level_and_match_nothing_unresolved() {
    let s = query("Observation", &[("subject:Patient.name", "peter")]);
    assert_eq!(s.more.chains, vec![Chain { name: "subject".into(), target: "Patient".into(), param: "name".into(), value: "peter".into() }]);
    assert_eq!(query("Observation", &[("patient.name", "x")]).more.chains[0].target, "Patient");
    assert_eq!(query("Observation", &[("encounter.class", "AMB")]).more.chains[0].target, "Encounter");
    assert!(to_sql(&s).select.contains(" AND 0"), "an unresolved chain matches nothing");
    for bad in ["subject:Patient.name.family", "subject:Spaceship.name", "patient._has:Observation:patient:code", "patient.nosuch"] {
        assert!(refused("Observation", &[(bad, "x")]), "{bad}");
    }
    let h = query("Patient", &[("_has:Observation:patient:code", "1234-5")]);
    assert_eq!(h.more.has, vec![Has { source: "Observation".into(), reference: "patient".into(), param: "code".into(), value: "1234-5".into() }]);
    assert!(refused("Patient", &[("_has:Observation:code:code", "x")]), "the link must be a reference");
    assert!(refused("Patient", &[("_has:Observation:patient:_has:Observation:patient:code", "x")]), "one level");
    assert!(refused("Patient", &[("_has:Observation", "x")]));
    assert!(matches!(
        parse("Observation", &pairs(&[("patient.name", "a"), ("patient.given", "b"), ("encounter.class", "c")]), true),
        Err(SearchError::TooComplex)
    ));
}

#[test]
fn include_iterate_is_parsed() {
    let s = query(
        "Observation",
        &[("_include", "Observation:encounter"), ("_include:iterate", "Encounter:patient"), ("_revinclude:iterate", "Observation:encounter")],
    );
    assert_eq!(s.includes, vec![("Observation".into(), "encounter".into())]);
    assert_eq!(s.more.iterate.len(), 2);
    assert_eq!(s.more.iterate[0], (Include { source: "Encounter".into(), param: "patient".into(), iterate: true }, false));
    assert!(s.more.iterate[1].1, "a revinclude");
    assert!(refused("Observation", &[("_include:recurse", "Observation:encounter")]));
    assert!(refused("Observation", &[("_include", "Encounter:patient")]), "without :iterate, a parameter of the searched type");
}

/// Every R4 modifier name (R4 §3.1.1.5), besides a reference's `:[type]`.
const R4_MODIFIERS: [&str; 11] = ["missing", "exact", "contains", "not", "text", "in", "not-in", "below", "above", "identifier", "ofType"];

#[test]
fn modifiers_match_the_parser() {
    // What the CapabilityStatement advertises ([`modifiers`], [`prefixes`]) is exactly what the
    // parser accepts, for every parameter of every served type.
    let mut checked = 0;
    for (t, own) in params::TYPES {
        for p in params::COMMON.iter().chain(own.iter()) {
            let sample = match p.kind {
                Kind::Uri => "http://a.org/x",
                Kind::Date => "2020",
                Kind::Quantity | Kind::Number => "1",
                Kind::Token | Kind::String | Kind::Reference => "x",
            };
            for m in R4_MODIFIERS {
                let value = if m == "missing" { "true" } else { sample };
                let key = format!("{}:{m}", p.name);
                let accepted = parse_at(t, &[(key.clone(), value.to_owned())], true, Some(NOW)).is_ok();
                assert_eq!(accepted, modifiers(p.kind).contains(&m), "{t}?{key}={value}");
                checked += 1;
            }
            for prefix in prefixes(p.kind) {
                let pair = (p.name.to_owned(), format!("{prefix}{sample}"));
                let search = parse_at(t, std::slice::from_ref(&pair), true, Some(NOW)).unwrap_or_else(|e| panic!("{t}?{}={}: {e}", pair.0, pair.1));
                let prefix_of = |c: &Clause| match c {
                    Clause::Date { prefix, .. } | Clause::Quantity { prefix, .. } => Some(*prefix),
                    _ => None,
                };
                assert_ne!(search.clauses.first().and_then(prefix_of), None, "{t}?{}={}", pair.0, pair.1);
                if *prefix != "eq" {
                    assert_ne!(search.clauses.first().and_then(prefix_of), Some(Prefix::Eq), "{t}?{}={} keeps its prefix", pair.0, pair.1);
                }
            }
            if p.kind == Kind::Reference {
                let target = p.targets.iter().copied().find(|x| params::is_served(x)).unwrap_or("Patient");
                let key = format!("{}:{target}", p.name);
                assert!(parse_at(t, &[(key.clone(), "x".to_owned())], true, Some(NOW)).is_ok(), "{t}?{key}=x");
            }
        }
    }
    assert!(checked > 15_000, "{checked}");
}
