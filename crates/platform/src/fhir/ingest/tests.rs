use super::*;
use serde_json::json;

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("gen-{n}")
    }
}

fn b(entries: Value) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Plans `bundle` with `resolved` and no id taken.
fn planned(bundle: &Value, resolved: &Resolved) -> Result<Plan, IngestError> {
    plan(&entries(bundle)?, resolved, &mut ids(), &|_, _| false)
}

fn none() -> Resolved {
    Resolved::new()
}

fn resolved(items: &[(&str, &str, &[&str])]) -> Resolved {
    items.iter().map(|(t, q, found)| ((t.to_string(), q.to_string()), found.iter().map(|s| s.to_string()).collect())).collect()
}

#[test]
fn plans_a_synthea_style_transaction() {
    let bundle = b(json!([
        {"fullUrl": "urn:uuid:p-1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:org-1", "resource": {"resourceType": "Organization"}, "request": {"method": "POST", "url": "Organization"}},
        {"fullUrl": "urn:uuid:e-1", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:p-1"}, "serviceProvider": {"reference": "urn:uuid:org-1"}}, "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": "urn:uuid:o-1", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:p-1"}, "encounter": {"reference": "urn:uuid:e-1"}}, "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Practitioner", "id": "d1"}, "request": {"method": "PUT", "url": "Practitioner/d1"}}
    ]));
    let plan = planned(&bundle, &none()).unwrap();
    assert_eq!(plan.write_order(), vec!["shared/Organization", "shared/Practitioner", "directory", "patient/p-1"]);
    let patient = &plan.partitions["patient/p-1"];
    assert_eq!(patient.len(), 3);
    assert_eq!(patient[1].resource["serviceProvider"]["reference"], "Organization/org-1");
    assert_eq!(patient[2].resource["encounter"]["reference"], "Encounter/e-1");
    assert_eq!(plan.answers[4], Answer::Written { reference: "Practitioner/d1".into(), created: false });
    assert_eq!(plan.responses()[0].as_ref().unwrap()["status"], "201 Created");
    assert_eq!(plan.directory_entries().len(), 5, "the Patient's directory copy is no entry");
}

#[test]
fn refuses_bad_bundles_before_writing_anything() {
    assert_eq!(entries(&json!({"resourceType": "Patient"})), Err(IngestError::NotABundle));
    assert_eq!(entries(&b(json!([{"resource": {"resourceType": "Spaceship"}}]))), Err(IngestError::BadEntry(0)));
    assert_eq!(entries(&b(json!([{"request": {"method": "DELETE", "url": "Spaceship/1"}}]))), Err(IngestError::BadEntry(0)));
    assert_eq!(
        entries(&b(json!([{"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/b"}}]))),
        Err(IngestError::BadRequest(0))
    );
    assert_eq!(
        entries(&b(json!([{"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": "Patient/a"}}]))),
        Err(IngestError::BadRequest(0))
    );
    assert_eq!(
        entries(&b(json!([{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}}]))),
        Err(IngestError::BadRequest(0))
    );
    assert_eq!(entries(&b(json!([{"request": {"method": "GET"}}]))), Err(IngestError::BadRequest(0)));
    assert_eq!(entries(&b(json!([{"request": {"method": "GET", "url": "Patient/a", "ifNoneMatch": "W/\"1\""}}]))), Err(IngestError::Conditional(0)));
    assert_eq!(
        entries(&b(json!([{"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/a", "ifMatch": "soon"}}]))),
        Err(IngestError::BadRequest(0))
    );
    assert_eq!(
        entries(&b(json!([{"request": {"method": "DELETE", "url": "Patient?", "ifNoneExist": "x=1"}}]))),
        Err(IngestError::BadRequest(0)),
        "empty criteria"
    );
    assert_eq!(
        planned(
            &b(
                json!([{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:nowhere"}}, "request": {"method": "POST", "url": "Observation"}}])
            ),
            &none()
        ),
        Err(IngestError::Dangling("urn:uuid:nowhere".into()))
    );
    let twice = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/a"}});
    let post = |url: &str| json!({"fullUrl": url, "resource": twice, "request": {"method": "POST", "url": "Observation"}});
    assert_eq!(planned(&b(json!([post("urn:uuid:dup"), post("urn:uuid:dup")])), &none()), Err(IngestError::Duplicate(1)));
    let put = json!({"resource": {"resourceType": "Patient", "id": "a"}, "request": {"method": "PUT", "url": "Patient/a"}});
    assert_eq!(planned(&b(json!([put, put])), &none()), Err(IngestError::Duplicate(1)));
    let delete = json!({"request": {"method": "DELETE", "url": "Patient/a"}});
    assert_eq!(planned(&b(json!([put, delete])), &none()), Err(IngestError::Duplicate(1)), "a resource written and deleted by one transaction");
    let absolute = json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "https://x/fhir/Patient/a"}}, "request": {"method": "POST", "url": "Observation"}});
    assert!(matches!(planned(&b(json!([absolute])), &none()), Err(IngestError::Unplaceable(_))));
    let generated = planned(&b(json!([{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}])), &none()).unwrap();
    assert_eq!(generated.answers[0], Answer::Written { reference: "Patient/gen-1".into(), created: true });
}

const NPI: &str = "identifier=http://hl7.org/fhir/sid/us-npi|9999";

#[test]
fn if_none_exist_reuses_the_one_match_and_refuses_several() {
    let doc = json!({"fullUrl": "urn:uuid:doc", "resource": {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999"}]},
        "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": NPI}});
    let visit = json!({"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/a"}, "participant": [{"individual": {"reference": "urn:uuid:doc"}}]},
        "request": {"method": "POST", "url": "Encounter"}});
    let bundle = b(json!([doc, visit]));
    let parsed = entries(&bundle).unwrap();
    assert_eq!(conditions(&parsed), vec![("Practitioner".to_owned(), NPI.to_owned())]);
    // No match: created, and the urn points at the new one.
    let fresh = planned(&bundle, &resolved(&[("Practitioner", NPI, &[])])).unwrap();
    assert_eq!(fresh.answers[0], Answer::Written { reference: "Practitioner/doc".into(), created: true });
    assert_eq!(fresh.partitions["patient/a"][0].resource["participant"][0]["individual"]["reference"], "Practitioner/doc");
    // One match: nothing written, 200 with its location, and the urn points at it.
    let again = planned(&bundle, &resolved(&[("Practitioner", NPI, &["d7"])])).unwrap();
    assert_eq!(again.answers[0], Answer::Existing("Practitioner/d7".into()));
    assert_eq!(again.responses()[0], Some(json!({"status": "200 OK", "location": "Practitioner/d7"})));
    assert!(!again.partitions.contains_key("shared/Practitioner"));
    assert_eq!(again.partitions["patient/a"][0].resource["participant"][0]["individual"]["reference"], "Practitioner/d7");
    // Several: 412.
    let err = planned(&bundle, &resolved(&[("Practitioner", NPI, &["d7", "d8"])])).unwrap_err();
    assert_eq!((err.clone(), err.status()), (IngestError::Multiple(0), 412));
}

#[test]
fn conditional_references_resolve_to_the_one_match_in_the_store_or_the_bundle() {
    let reference = format!("Practitioner?{NPI}");
    let visit = json!({"resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/a"}, "participant": [{"individual": {"reference": reference}}]},
        "request": {"method": "POST", "url": "Encounter"}});
    let alone = b(json!([visit]));
    assert_eq!(conditions(&entries(&alone).unwrap()), vec![("Practitioner".to_owned(), NPI.to_owned())]);
    let one = planned(&alone, &resolved(&[("Practitioner", NPI, &["d7"])])).unwrap();
    assert_eq!(one.partitions["patient/a"][0].resource["participant"][0]["individual"]["reference"], "Practitioner/d7");
    let err = planned(&alone, &resolved(&[("Practitioner", NPI, &[])])).unwrap_err();
    assert_eq!((err.clone(), err.status()), (IngestError::Unresolved(reference.clone()), 400));
    let err = planned(&alone, &resolved(&[("Practitioner", NPI, &["d7", "d8"])])).unwrap_err();
    assert_eq!((err.clone(), err.status()), (IngestError::Ambiguous(reference.clone()), 412));
    // The practitioner created by the same transaction is the match.
    let doc = json!({"fullUrl": "urn:uuid:doc", "resource": {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999"}]},
        "request": {"method": "POST", "url": "Practitioner"}});
    let other = json!({"resource": {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1111"}]},
        "request": {"method": "POST", "url": "Practitioner"}});
    let together = b(json!([doc, other, visit]));
    let plan = planned(&together, &resolved(&[("Practitioner", NPI, &[])])).unwrap();
    assert_eq!(plan.partitions["patient/a"][0].resource["participant"][0]["individual"]["reference"], "Practitioner/doc");
    // ...and the one in the store too: two.
    assert_eq!(planned(&together, &resolved(&[("Practitioner", NPI, &["d7"])])), Err(IngestError::Ambiguous(reference.clone())));
    let bad = b(
        json!([{"resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/a"}, "participant": [{"individual": {"reference": "Practitioner?colour=blue"}}]},
        "request": {"method": "POST", "url": "Encounter"}}]),
    );
    assert!(matches!(planned(&bad, &resolved(&[("Practitioner", "colour=blue", &[])])), Err(IngestError::BadCondition(..))));
    // A chain would match the bundle's own practitioners by their other clauses only: refused.
    let chained = "Encounter?subject:Patient.name=x";
    let bad = b(
        json!([{"resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/a"}, "partOf": {"reference": chained}},
        "request": {"method": "POST", "url": "Encounter"}}]),
    );
    assert!(matches!(planned(&bad, &resolved(&[("Encounter", "subject:Patient.name=x", &[])])), Err(IngestError::BadCondition(..))));
}

#[test]
fn conditional_update_and_delete_entries_follow_the_match_count() {
    let q = "identifier=urn:mrn|1";
    let put = |id: Option<&str>| {
        let mut patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}]});
        if let Some(id) = id {
            patient["id"] = json!(id);
        }
        b(json!([{"fullUrl": "urn:uuid:pp", "resource": patient, "request": {"method": "PUT", "url": format!("Patient?{q}")}}]))
    };
    let created = planned(&put(None), &resolved(&[("Patient", q, &[])])).unwrap();
    assert_eq!(created.answers[0], Answer::Written { reference: "Patient/pp".into(), created: true });
    let updated = planned(&put(None), &resolved(&[("Patient", q, &["a"])])).unwrap();
    assert_eq!(updated.answers[0], Answer::Written { reference: "Patient/a".into(), created: false });
    assert_eq!(updated.partitions["patient/a"][0].resource["id"], "a");
    assert_eq!(planned(&put(Some("zz")), &resolved(&[("Patient", q, &["a"])])), Err(IngestError::WrongId(0)));
    assert_eq!(planned(&put(None), &resolved(&[("Patient", q, &["a", "b"])])), Err(IngestError::Multiple(0)));

    let delete = b(
        json!([{"request": {"method": "DELETE", "url": format!("Observation?{q}")}}, {"request": {"method": "DELETE", "url": "Observation/o9", "ifMatch": "W/\"2\""}}]),
    );
    let none_matched = planned(&delete, &resolved(&[("Observation", q, &[])])).unwrap();
    assert_eq!(none_matched.deletes, vec![("Observation".into(), "o9".into(), Some(2))]);
    assert_eq!(none_matched.answers, vec![Answer::Deleted, Answer::Deleted]);
    let one = planned(&delete, &resolved(&[("Observation", q, &["o1"])])).unwrap();
    assert_eq!(one.deletes[0], ("Observation".into(), "o1".into(), None));
    assert_eq!(planned(&delete, &resolved(&[("Observation", q, &["o1", "o2"])])), Err(IngestError::Multiple(0)));

    let get = planned(&b(json!([{"request": {"method": "GET", "url": "Patient?name=x"}}])), &none()).unwrap();
    assert_eq!(get.answers, vec![Answer::Read("Patient?name=x".into())]);
    assert_eq!(get.responses(), vec![None]);
}

#[test]
fn refuses_a_bundle_with_an_entry_that_fails_its_r4_definition() {
    let entry = |resource: Value| json!({"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}});
    let bundle = b(json!([
        entry(json!({"resourceType": "Patient", "name": [{"given": ["a"]}]})),
        entry(json!({"resourceType": "Observation", "code": {"text": "x"}, "valueQuantity": {"value": "high"}}))
    ]));
    let refused = entries(&bundle).unwrap_err();
    let IngestError::Invalid(1, issues) = &refused else { panic!("{refused:?}") };
    let found: Vec<(&str, &str)> = issues.iter().map(|i| (i.code.code(), i.expression.as_str())).collect();
    assert_eq!(found, vec![("value", "Observation.value.value"), ("required", "Observation.status")]);
    let outcome = refused.outcome();
    assert_eq!(
        outcome["issue"][1],
        json!({"severity": "error", "code": "required", "diagnostics": "entry 1: Observation.status is required (1..1)", "expression": ["Observation.status"]})
    );
    assert_eq!(IngestError::NotABundle.outcome()["issue"][0]["code"], "invalid");
    let put = json!({"resource": {"resourceType": "Observation", "code": {"text": "x"}}, "request": {"method": "PUT", "url": "Observation?code=x"}});
    assert!(matches!(entries(&b(json!([put]))), Err(IngestError::Invalid(0, _))), "conditional updates are checked too");
}
