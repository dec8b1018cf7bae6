//! search, `_include` and `_revinclude` (R4 §3.1.1). The gate decides, partition by
//! partition, which scopes reach it and so which filter its results must pass.

use super::read::{is_patient_data, single_patient_of};
use super::{type_and_id, usable, Fhir, FhirRequest, FhirResponse};
use crate::fhir::gate::{self, Filter, Place, Reach, Usable};
use crate::fhir::outcome::IssueType;
use crate::fhir::search::{self, Clause, Search, Target};
use crate::fhir::store::{patient_partition, shared_partition, DIRECTORY};
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use smart_protocol::scopes::Permissions;
use std::collections::HashSet;

type Hits = Vec<(String, Box<RawValue>)>;

/// The partitions a search runs in, each with the filter its results must pass.
pub(super) fn targets_for_patients(usable: &[Usable<'_>], grant: &AccessGrant, reach: &Reach) -> Vec<(String, Filter)> {
    // Patients: one compartment, or the directory, where each scope's reach becomes an
    // `_id` condition of its group.
    if let Some(p) = single_patient_of(reach) {
        return gate::at(usable, grant, Permissions::SEARCH, Place::Compartment(p)).map(|f| (patient_partition(p), f)).into_iter().collect();
    }
    let mut filter = Filter::AnyOf(Vec::new());
    for u in usable {
        let groups: Vec<Option<Vec<Clause>>> = match &u.reach {
            Reach::All => vec![u.constraint.clone()],
            Reach::Patients(set) if set.is_empty() => continue,
            Reach::Patients(set) => {
                let id = Clause::Token { name: "_id".into(), any_of: set.iter().map(|p| (None, Some(p.clone()))).collect() };
                vec![Some([vec![id], u.constraint.clone().unwrap_or_default()].concat())]
            }
        };
        for group in groups {
            filter = match (filter, group) {
                (Filter::All, _) | (_, None) => Filter::All,
                (Filter::AnyOf(mut gs), Some(g)) => {
                    gs.push(g);
                    Filter::AnyOf(gs)
                }
            };
        }
    }
    match filter {
        Filter::AnyOf(groups) if groups.is_empty() => Vec::new(),
        f => vec![(DIRECTORY.to_owned(), f)],
    }
}

enum Plan {
    Run(Vec<(String, Filter)>),
    /// Patient data of every patient: fan out over the directory's patients.
    FanOut,
}

fn plan(usable: &[Usable<'_>], grant: &AccessGrant, query: &Search) -> Plan {
    let t = query.resource_type.as_str();
    let reach = gate::reach(usable);
    let at = |place: Place<'_>, partition: String| gate::at(usable, grant, Permissions::SEARCH, place).map(|f| (partition, f));
    if t == "Patient" {
        return Plan::Run(targets_for_patients(usable, grant, &reach));
    }
    if !is_patient_data(t) {
        return Plan::Run(at(Place::Shared, shared_partition(t)).into_iter().collect());
    }
    match (search::target(query, None), reach) {
        (Target::Partition(p), _) => Plan::Run(at(Place::of_partition(&p), p.clone()).into_iter().collect()),
        (_, Reach::Patients(set)) => Plan::Run(set.iter().filter_map(|p| at(Place::Compartment(p), patient_partition(p))).collect()),
        (_, Reach::All) => Plan::FanOut,
    }
}

pub(super) async fn search(fhir: &Fhir<'_>, grant: &AccessGrant, resource_type: &str, request: &FhirRequest) -> Result<FhirResponse, StoreError> {
    let usable = match usable(grant, resource_type, Permissions::SEARCH) {
        Ok(u) => u,
        Err(refusal) => return Ok(refusal),
    };
    let query = match search::parse(resource_type, &request.query, request.strict) {
        Ok(q) => q,
        Err(e) => return Ok(FhirResponse::outcome(400, IssueType::Invalid, &e.to_string())),
    };
    let targets = match plan(&usable, grant, &query) {
        Plan::Run(targets) => targets,
        Plan::FanOut => match every_patient(fhir).await? {
            Some(patients) => patients
                .into_iter()
                .filter_map(|p| gate::at(&usable, grant, Permissions::SEARCH, Place::Compartment(&p)).map(|f| (patient_partition(&p), f)))
                .collect(),
            None => {
                return Ok(FhirResponse::outcome(
                    400,
                    IssueType::TooCostly,
                    &format!("too many patients to search {resource_type} across all of them: give patient=…"),
                ))
            }
        },
    };
    let (hits, total) = run(fhir, &query, &targets).await?;
    let included = match targets.as_slice() {
        [(partition, _)] if !query.summary_count => includes(fhir, grant, &query, partition, &hits).await?,
        _ => Vec::new(),
    };
    Ok(FhirResponse::json(200, searchset(fhir.base, &request.query, &query, &hits, &included, total)))
}

/// Runs `query` in each target with its filter: one partition as is; several merged in the
/// requested order and paged.
pub(super) async fn run(fhir: &Fhir<'_>, query: &Search, targets: &[(String, Filter)]) -> Result<(Hits, i64), StoreError> {
    let filtered = |filter: &Filter| Search { filters: filter.groups(), ..query.clone() };
    match targets {
        [] => Ok((Vec::new(), 0)),
        [(partition, filter)] => {
            let found = fhir.store.search(partition, &filtered(filter)).await?;
            Ok((found.resources, found.total))
        }
        many => {
            let results = futures::future::join_all(many.iter().map(|(partition, filter)| {
                let page = Search { count: query.offset.saturating_add(query.count), offset: 0, ..filtered(filter) };
                async move { fhir.store.search(partition, &page).await }
            }))
            .await;
            let mut total = 0;
            let mut keyed = Vec::new();
            for result in results {
                let result = result?;
                total += result.total;
                for (id, r) in result.resources {
                    let value: Value = serde_json::from_str(r.get()).unwrap_or_default();
                    keyed.push((search::sort_key(query, &id, &value), (id, r)));
                }
            }
            keyed.sort_by(|a, b| search::order(query, (&a.0, &(a.1).0), (&b.0, &(b.1).0)));
            Ok((keyed.into_iter().skip(query.offset).take(query.count).map(|(_, r)| r).collect(), total))
        }
    }
}

/// Every patient's id, or `None` when there are more than [`search::MAX_FANOUT`].
async fn every_patient(fhir: &Fhir<'_>) -> Result<Option<Vec<String>>, StoreError> {
    let mut list = search::parse("Patient", &[], false).map_err(|e| StoreError(e.to_string()))?;
    list.count = search::MAX_FANOUT + 1;
    let patients = fhir.store.search(DIRECTORY, &list).await?;
    if patients.resources.len() > search::MAX_FANOUT {
        return Ok(None);
    }
    Ok(Some(patients.resources.into_iter().map(|(id, _)| id).collect()))
}

/// The searchset Bundle (R4 §3.1.1.5.1): matches, includes, the unknown-parameter warning, links.
fn searchset(base: &str, pairs: &[(String, String)], query: &Search, hits: &Hits, included: &[Box<RawValue>], total: i64) -> String {
    let resource_type = &query.resource_type;
    let mut entries: Vec<String> = if query.summary_count {
        Vec::new()
    } else {
        hits.iter()
            .map(|(id, r)| {
                format!("{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"match\"}}}}", json!(format!("{base}/{resource_type}/{id}")), r.get())
            })
            .collect()
    };
    for r in included {
        let value: Value = serde_json::from_str(r.get()).unwrap_or_default();
        let (t, id) = type_and_id(&value);
        entries.push(format!("{{\"fullUrl\":{},\"resource\":{},\"search\":{{\"mode\":\"include\"}}}}", json!(format!("{base}/{t}/{id}")), r.get()));
    }
    if !query.ignored.is_empty() {
        let warning = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "not-supported",
            "diagnostics": format!("ignored unknown search parameters: {}", query.ignored.join(", "))}]});
        entries.push(format!("{{\"resource\":{warning},\"search\":{{\"mode\":\"outcome\"}}}}"));
    }
    let links: Vec<Value> =
        search::links(&format!("{base}/{resource_type}"), pairs, query, total).into_iter().map(|(rel, url)| json!({"relation": rel, "url": url})).collect();
    format!("{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":{total},\"link\":{},\"entry\":[{}]}}", Value::Array(links), entries.join(","))
}

/// `_include` and `_revinclude` (non-iterative), each included resource through the gate
/// like a read of its own.
async fn includes(fhir: &Fhir<'_>, grant: &AccessGrant, query: &Search, partition: &str, hits: &Hits) -> Result<Vec<Box<RawValue>>, StoreError> {
    if query.includes.is_empty() && query.revincludes.is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Vec<Value> = hits.iter().filter_map(|(_, r)| serde_json::from_str(r.get()).ok()).collect();
    let mut seen: HashSet<String> = parsed.iter().map(|r| format!("{}/{}", type_and_id(r).0, type_and_id(r).1)).collect();
    let mut out = Vec::new();
    for (source, name) in &query.includes {
        let mut targets: Vec<String> = parsed.iter().flat_map(|r| search::references(r, source, name)).collect();
        targets.sort();
        targets.dedup();
        for target in targets.into_iter().take(100) {
            let Some((t, id)) = target.split_once('/') else { continue };
            if seen.contains(&target) || !crate::fhir::params::is_served(t) {
                continue;
            }
            let Ok(usable) = gate::usable(grant, t, Permissions::READ) else { continue };
            let place_of = match (t, is_patient_data(t) && partition.starts_with("patient/")) {
                ("Patient", _) => Some(patient_partition(id)),
                (_, true) => Some(partition.to_owned()),
                _ => super::read::directory(fhir, t, id).await?,
            };
            let Some(where_) = place_of else { continue };
            let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&where_)) else { continue };
            let read = fhir.store.read(&where_, t, id, None).await?;
            if let Some(content) = read.content.filter(|_| read.status == crate::fhir::store::ReadStatus::Found) {
                let value: Value = serde_json::from_str(content.get()).unwrap_or_default();
                if filter.admits(&value) && seen.insert(target.clone()) {
                    out.push(content);
                }
            }
        }
    }
    for (source, name) in &query.revincludes {
        let Ok(usable) = gate::usable(grant, source, Permissions::READ) else { continue };
        let where_ = if is_patient_data(source) {
            if !partition.starts_with("patient/") {
                continue; // patient data referencing shared resources lives in every partition
            }
            partition.to_owned()
        } else {
            shared_partition(source)
        };
        let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&where_)) else { continue };
        let refs: Vec<String> = seen.iter().filter(|r| r.starts_with(&format!("{}/", query.resource_type))).cloned().collect();
        for chunk in refs.chunks(search::MAX_BOUND / 2) {
            let mut rev = search::parse(source, &[], false).map_err(|e| StoreError(e.to_string()))?;
            rev.clauses.push(Clause::Reference { name: name.clone(), any_of: chunk.to_vec() });
            rev.filters = filter.groups();
            rev.count = 500;
            for (id, r) in fhir.store.search(&where_, &rev).await?.resources {
                if seen.insert(format!("{source}/{id}")) {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}
