use super::query::{MAX_CLAUSES, MAX_VALUES};
use super::*;
use crate::fhir::params;
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
    let s = parse(
        "Observation",
        &pairs(&[("patient", "p1"), ("code", "http://loinc.org|4548-4,2339-0"), ("date", "ge2020"), ("_sort", "-date"), ("_count", "10"), ("foo", "bar")]),
        false,
    )
    .unwrap();
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
    assert!(matches!(parse("Observation", &pairs(&[("code:contains", "x")]), false), Err(SearchError::BadValue(..))));
    assert!(matches!(parse("Observation", &pairs(&[("_sort", "patient")]), false), Err(SearchError::BadValue(..))));
    let by_family = to_sql(&parse("Patient", &pairs(&[("_sort", "family")]), false).unwrap());
    assert!(by_family
        .select
        .contains("ORDER BY (SELECT MIN(i.text) FROM idx i INDEXED BY idx_row_name WHERE i.type = r.type AND i.id = r.id AND i.name = 'family') ASC, r.id"));
    let a = json!({"resourceType": "Patient", "id": "z", "name": [{"family": "Abbott"}]});
    let b = json!({"resourceType": "Patient", "id": "a", "name": [{"family": "Zulauf"}]});
    let q = parse("Patient", &pairs(&[("_sort", "family")]), false).unwrap();
    assert!(sort_key(&q, "z", &a) < sort_key(&q, "a", &b), "by family name, not by id");
    let many = vec![("code".to_string(), ["a"; MAX_VALUES + 1].join(","))];
    assert_eq!(parse("Observation", &many, false), Err(SearchError::TooComplex));
}

#[test]
fn sql_binds_every_value_and_stays_within_the_bound_parameter_limit() {
    let s = parse(
        "Observation",
        &pairs(&[
            ("patient", "Patient/p1"),
            ("code", "http://loinc.org|4548-4"),
            ("date", "ge2020-01-01"),
            ("value-quantity", "gt5|http://unitsofmeasure.org|%"),
            ("_sort", "-date"),
        ]),
        false,
    )
    .unwrap();
    let sql = to_sql(&s);
    assert!(!sql.select.contains("4548-4") && !sql.select.contains("p1"), "values are bound, not spliced");
    assert_eq!(bound_slots(&sql.select), sql.select_params.len());
    assert_eq!(bound_slots(&sql.count), sql.count_params.len());
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
    let l = links("https://x/fhir/Observation", &q, &s, true);
    assert_eq!(l[0], ("self", "https://x/fhir/Observation?patient=p1&_count=10&_offset=0".into()));
    assert_eq!(l[1], ("next", "https://x/fhir/Observation?patient=p1&_count=10&_offset=10".into()));
    assert_eq!(links("u", &q, &s, false).len(), 1, "no next on the last page");
}

#[test]
fn granular_filters_are_or_groups_and_match_in_memory_too() {
    let mut s = parse("Observation", &pairs(&[("patient", "p1")]), false).unwrap();
    s.filters = vec![
        parse("Observation", &pairs(&[("category", "laboratory")]), true).unwrap().clauses,
        parse("Observation", &pairs(&[("category", "vital-signs")]), true).unwrap().clauses,
    ];
    let sql = to_sql(&s);
    assert!(sql.select.contains(") OR ("));
    assert_eq!(bound_slots(&sql.select), sql.select_params.len());
    let lab = index(&json!({"resourceType": "Observation", "id": "o", "category": [{"coding": [{"code": "laboratory"}]}]}));
    let vital = index(&json!({"resourceType": "Observation", "id": "o", "category": [{"coding": [{"code": "vital-signs"}]}]}));
    assert!(matches(&lab, &s.filters[0]));
    assert!(!matches(&vital, &s.filters[0]));
}

mod fuzz {
    //! Arbitrary UTF-8 through every parser of search input: typed errors, never a panic.
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn served_type() -> impl Strategy<Value = String> {
        proptest::sample::select(params::TYPES.iter().map(|(t, _)| t.to_string()).collect::<Vec<_>>())
    }

    /// Parameter names with and without modifiers, and the control parameters.
    fn name() -> impl Strategy<Value = String> {
        let known = [
            "date",
            "_lastUpdated",
            "code",
            "category",
            "patient",
            "subject",
            "value-quantity",
            "name",
            "birthdate",
            "_id",
            "_count",
            "_offset",
            "_sort",
            "_include",
            "_revinclude",
            "_summary",
            "identifier",
            "code:text",
            "name:exact",
            "date:missing",
            "code:not",
            "name:contains",
            "url:below",
            "url:above",
            "value-quantity:missing",
            "subject:Patient.name",
            "patient.name",
            "_has:Observation:patient:code",
            "_include:iterate",
            "_revinclude:iterate",
            "_elements",
            "_total",
        ];
        prop_oneof![proptest::sample::select(known.to_vec()).prop_map(str::to_owned), any::<String>()]
    }

    /// Values near the real forms (dates, prefixes, tokens, quantities) with any character
    /// spliced in, and arbitrary strings.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "(eq|ne|lt|gt|le|ge|sa|eb|ap)?[0-9]{0,4}-?[0-9]{0,2}-?[0-9]{0,2}(T[0-9]{0,2}:?[0-9]{0,2}:?[0-9]{0,2})?(Z|[+-][0-9]{2}:[0-9]{2})?",
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
                prop_assert_eq!(bound_slots(&sql.select), sql.select_params.len());
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
