//! search, `_include` and `_revinclude` (R4 §3.1.1). The gate decides, partition by
//! partition, which scopes reach it and so which filter its results must pass.

use super::read::{is_patient_data, single_patient_of};
use super::{type_and_id, usable, Fhir, FhirRequest, FhirResponse};
use crate::fhir::gate::{self, Filter, Place, Reach, Usable};
use crate::fhir::outcome::IssueType;
use crate::fhir::search::{self, Clause, Search, Subset, Target, Total};
use crate::fhir::store::{patient_partition, shared_partition, DIRECTORY};
use crate::guard::AccessGrant;
use crate::ports::StoreError;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use smart_protocol::scopes::Permissions;
use std::collections::HashSet;

type Hits = Vec<(String, Box<RawValue>)>;

/// Most storage calls (reads, directory lookups, searches) the `_include`s and `_revinclude`s
/// of one search may make; past this the search is refused as too costly. Each is a Durable
/// Object call, which Cloudflare counts as a subrequest (1,000 per request on the paid plan):
/// what is left of those once the search itself has fanned out to every partition (at most
/// [`search::MAX_FANOUT`] patients and the shared one) for its query and each of its chains or
/// `_has` ([`search::MAX_CHAINS`]), with a few for the token and the keys.
pub const MAX_INCLUDE_CALLS: usize = SUBREQUESTS - (1 + search::MAX_CHAINS) * (search::MAX_FANOUT + 1) - 10;

/// Cloudflare's subrequests per request (Workers paid plan).
const SUBREQUESTS: usize = 1000;

/// Why the includes of a search were not found.
enum IncludeError {
    Store(StoreError),
    /// They need more than [`MAX_INCLUDE_CALLS`] storage calls.
    TooCostly,
}

impl From<StoreError> for IncludeError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The storage calls left to a search's includes.
struct Calls(std::cell::Cell<usize>);

impl Calls {
    fn new() -> Self {
        Self(std::cell::Cell::new(MAX_INCLUDE_CALLS))
    }

    /// Takes one call, or refuses when none is left.
    fn spend(&self) -> Result<(), IncludeError> {
        let left = self.0.get().checked_sub(1).ok_or(IncludeError::TooCostly)?;
        self.0.set(left);
        Ok(())
    }
}

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
    // `ap` dates are approximated against the token's issue time (within its lifetime of now).
    let mut query = match search::parse_at(resource_type, &request.query, request.strict, Some(grant.iat)) {
        Ok(q) => q,
        Err(e) => return Ok(FhirResponse::outcome(400, IssueType::Invalid, &e.to_string())),
    };
    if let Err(refusal) = resolve(fhir, grant, &mut query).await? {
        return Ok(refusal);
    }
    let targets = match targets(fhir, grant, &usable, &query).await? {
        Ok(t) => t,
        Err(refusal) => return Ok(refusal),
    };
    // `_total=none`: no count; one more row tells whether there is a next page.
    let counted = query.total == Total::Accurate || query.summary_count;
    let page = if counted { query.clone() } else { Search { count: query.count + 1, ..query.clone() } };
    if let Some(refusal) = too_complex_with_filters(&page, &targets) {
        return Ok(refusal);
    }
    let (mut hits, total) = run(fhir, &page, &targets).await?;
    let has_next = if counted { (query.offset.saturating_add(query.count) as i64) < total } else { hits.len() > query.count };
    hits.truncate(query.count);
    let everyone = match revinclude_patients(fhir, grant, &query, &targets).await? {
        Ok(list) => list,
        Err(refusal) => return Ok(refusal),
    };
    let calls = Calls::new();
    let included = match targets.as_slice() {
        _ if query.summary_count => Ok(Vec::new()),
        [(partition, _)] => {
            let mut seen = hits.iter().filter_map(|(_, r)| serde_json::from_str::<Value>(r.get()).ok()).map(|v| key_of(&v)).collect();
            includes(fhir, grant, &query, partition, &everyone, &hits, &mut seen, &calls).await
        }
        many => includes_by_partition(fhir, grant, &query, many, &everyone, &hits, &calls).await,
    };
    let included = match included {
        Ok(included) => included,
        Err(IncludeError::Store(e)) => return Err(e),
        Err(IncludeError::TooCostly) => {
            return Ok(FhirResponse::outcome(
                400,
                IssueType::TooCostly,
                &format!("the _include and _revinclude of this search need more than {MAX_INCLUDE_CALLS} storage reads: ask fewer matches (_count), fewer includes, or search with patient context"),
            ))
        }
    };
    let set = Searchset { base: fhir.base, pairs: &request.query, query: &query, total: counted.then_some(total), has_next };
    Ok(FhirResponse::json(200, set.render(&hits, &included)))
}

/// Most resources a chained parameter or `_has` may resolve to (their ids become bound values).
pub const MAX_CHAIN_IDS: usize = 40;

fn too_costly(what: &str) -> FhirResponse {
    FhirResponse::outcome(400, IssueType::TooCostly, &format!("{what} matches more than {MAX_CHAIN_IDS} resources: narrow it"))
}

/// The one-clause search of a chain's or `_has`'s inner `param=value` on `target`.
fn inner_search(target: &str, param: &str, value: &str, now: i64) -> Result<Search, FhirResponse> {
    let invalid = |why: String| FhirResponse::outcome(400, IssueType::Invalid, &why);
    let inner = search::parse_at(target, &[(param.to_owned(), value.to_owned())], true, Some(now)).map_err(|e| invalid(e.to_string()))?;
    if inner.clauses.len() != 1 || inner.unresolved() {
        return Err(invalid(format!("{param} is not a search parameter of {target} that a chain can use")));
    }
    Ok(inner)
}

/// Resolves chained parameters and `_has` into clauses (R4 §3.1.1.4.13, §3.1.1.4.14), one
/// level deep. Each inner search runs as a search of the caller's own, through the gate: a
/// chain matches only resources the caller could find by searching the target type itself,
/// so it reveals nothing the caller cannot read (a 403 when it may not search that type).
/// Other searches of the API (conditional writes) can resolve theirs with it too; unresolved,
/// a search matches nothing.
pub(super) async fn resolve(fhir: &Fhir<'_>, grant: &AccessGrant, query: &mut Search) -> Result<Result<(), FhirResponse>, StoreError> {
    for chain in std::mem::take(&mut query.more.chains) {
        let inner = match inner_search(&chain.target, &chain.param, &chain.value, grant.iat) {
            Ok(s) => Search { count: MAX_CHAIN_IDS + 1, ..s },
            Err(refusal) => return Ok(Err(refusal)),
        };
        let (found, _) = match find(fhir, grant, &inner).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if found.len() > MAX_CHAIN_IDS {
            return Ok(Err(too_costly(&format!("the chained parameter {}.{}", chain.name, chain.param))));
        }
        let any_of = found.into_iter().map(|(id, _)| format!("{}/{id}", chain.target)).collect();
        query.clauses.push(Clause::Reference { name: chain.name, any_of });
    }
    for has in std::mem::take(&mut query.more.has) {
        let what = format!("_has:{}:{}:{}", has.source, has.reference, has.param);
        let inner = match inner_search(&has.source, &has.param, &has.value, grant.iat) {
            Ok(s) => Search { count: search::MAX_COUNT, ..s },
            Err(refusal) => return Ok(Err(refusal)),
        };
        let (found, total) = match find(fhir, grant, &inner).await? {
            Ok(found) => found,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let prefix = format!("{}/", query.resource_type);
        let mut ids: Vec<String> = found
            .iter()
            .filter_map(|(_, r)| serde_json::from_str::<Value>(r.get()).ok())
            .flat_map(|r| search::references(&r, &has.source, &has.reference))
            .filter_map(|r| r.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        if total > search::MAX_COUNT as i64 || ids.len() > MAX_CHAIN_IDS {
            return Ok(Err(too_costly(&what)));
        }
        query.clauses.push(Clause::Token { name: "_id".into(), any_of: ids.into_iter().map(|id| (None, Some(id))).collect() });
    }
    if search::to_sql(query).select_params.len() > search::MAX_BOUND {
        return Ok(Err(FhirResponse::outcome(400, IssueType::TooCostly, &search::SearchError::TooComplex.to_string())));
    }
    Ok(Ok(()))
}

/// A search of the caller's own (no chains): the gate's partitions and filters, then the run.
async fn find(fhir: &Fhir<'_>, grant: &AccessGrant, query: &Search) -> Result<Result<(Hits, i64), FhirResponse>, StoreError> {
    let usable = match usable(grant, &query.resource_type, Permissions::SEARCH) {
        Ok(u) => u,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let targets = match targets(fhir, grant, &usable, query).await? {
        Ok(t) => t,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Some(refusal) = too_complex_with_filters(query, &targets) {
        return Ok(Err(refusal));
    }
    Ok(Ok(run(fhir, query, &targets).await?))
}

/// The partitions `query` runs in, each with the filter the gate sets there.
async fn targets(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    usable: &[Usable<'_>],
    query: &Search,
) -> Result<Result<Vec<(String, Filter)>, FhirResponse>, StoreError> {
    Ok(Ok(match plan(usable, grant, query) {
        Plan::Run(targets) => targets,
        Plan::FanOut => match every_patient(fhir).await? {
            // Every compartment, and the type's shared partition: patient data that names no
            // patient (an Observation of a Location, an Account without subject) is kept there.
            Some(patients) => patients
                .into_iter()
                .filter_map(|p| gate::at(usable, grant, Permissions::SEARCH, Place::Compartment(&p)).map(|f| (patient_partition(&p), f)))
                .chain(gate::at(usable, grant, Permissions::SEARCH, Place::Shared).map(|f| (shared_partition(&query.resource_type), f)))
                .collect(),
            None => {
                return Ok(Err(FhirResponse::outcome(
                    400,
                    IssueType::TooCostly,
                    &format!("too many patients to search {} across all of them: give patient=…", query.resource_type),
                )))
            }
        },
    }))
}

/// The 400 for a search whose statement no longer fits once the gate's filters add their
/// bound values (review finding 6: a search at the limit failed in the partition, a 500,
/// under a granular scope). Every caller of [`run`] asks this first.
pub(super) fn too_complex_with_filters(query: &Search, targets: &[(String, Filter)]) -> Option<FhirResponse> {
    let fits = |filter: &Filter| search::to_sql(&Search { filters: filter.groups(), ..query.clone() }).select_params.len() <= search::MAX_BOUND;
    (!targets.iter().all(|(_, filter)| fits(filter))).then(|| FhirResponse::outcome(400, IssueType::TooCostly, &search::SearchError::TooComplex.to_string()))
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
                // A partition that did not count (`_total=none`) answers a negative total.
                total += result.total.max(result.resources.len() as i64);
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

/// The compartments a `_revinclude` of patient data from shared resources (a Medication's
/// MedicationAdministrations) searches when the caller reaches every patient: the directory's
/// patients, or a 400 above [`search::MAX_FANOUT`], like a search of patient data without
/// patient context. Empty when the search asks no such revinclude (a `Patient` search
/// revincludes from each matched patient's own compartment).
async fn revinclude_patients(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    query: &Search,
    targets: &[(String, Filter)],
) -> Result<Result<Vec<String>, FhirResponse>, StoreError> {
    // A search in a shared partition, or across patients (whose matches may be kept in the
    // type's shared partition, patient data that names no patient).
    let from_shared = targets.iter().any(|(p, _)| !p.starts_with("patient/")) && query.resource_type != "Patient" && !query.summary_count;
    let mut sources =
        query.revincludes.iter().map(|(s, _)| s.as_str()).chain(query.more.iterate.iter().filter(|(_, rev)| *rev).map(|(i, _)| i.source.as_str()));
    let everyone = |s: &str| gate::usable(grant, s, Permissions::READ).is_ok_and(|u| matches!(gate::reach(&u), Reach::All));
    if !from_shared || !sources.any(|s| is_patient_data(s) && everyone(s)) {
        return Ok(Ok(Vec::new()));
    }
    Ok(match every_patient(fhir).await? {
        Some(patients) => Ok(patients),
        None => Err(FhirResponse::outcome(
            400,
            IssueType::TooCostly,
            &format!("too many patients to _revinclude patient data of {} across all of them: search with patient context", query.resource_type),
        )),
    })
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
struct Searchset<'a> {
    base: &'a str,
    pairs: &'a [(String, String)],
    query: &'a Search,
    /// `None` under `_total=none`.
    total: Option<i64>,
    has_next: bool,
}

impl Searchset<'_> {
    fn render(&self, hits: &Hits, included: &[Box<RawValue>]) -> String {
        let (base, query) = (self.base, self.query);
        let resource_type = &query.resource_type;
        let mut entries: Vec<String> = if query.summary_count {
            Vec::new()
        } else {
            hits.iter()
                .map(|(id, r)| {
                    let full_url = json!(format!("{base}/{resource_type}/{id}"));
                    let resource = match &query.more.subset {
                        None => r.get().to_owned(),
                        Some(how) => serde_json::from_str::<Value>(r.get()).map(|v| subset(v, how).to_string()).unwrap_or_else(|_| r.get().to_owned()),
                    };
                    format!("{{\"fullUrl\":{full_url},\"resource\":{resource},\"search\":{{\"mode\":\"match\"}}}}")
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
        let links: Vec<Value> = search::links(&format!("{base}/{resource_type}"), self.pairs, query, self.has_next)
            .into_iter()
            .map(|(rel, url)| json!({"relation": rel, "url": url}))
            .collect();
        let total = self.total.map(|t| format!("\"total\":{t},")).unwrap_or_default();
        format!("{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",{total}\"link\":{},\"entry\":[{}]}}", Value::Array(links), entries.join(","))
    }
}

/// The tag of a resource returned in part (R4 §3.1.1.5.5, §3.1.1.5.6).
const SUBSETTED: (&str, &str) = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED");

/// `resource` cut down to what `how` asks for, marked SUBSETTED.
fn subset(resource: Value, how: &Subset) -> Value {
    let Value::Object(mut fields) = resource else { return resource };
    let resource_type = fields.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
    let always = ["resourceType", "id", "meta"];
    let keep = |key: &str| -> bool {
        // `_birthDate` (a primitive's id and extensions) goes with `birthDate`.
        let name = key.strip_prefix('_').unwrap_or(key);
        always.contains(&name)
            || match how {
                Subset::Summary => crate::fhir::params::is_summary_key(&resource_type, key),
                Subset::Text => name == "text",
                Subset::Data => name != "text",
                Subset::Elements(names) => names.iter().any(|n| n == name || choice_of(name, n)),
            }
    };
    fields.retain(|name, _| keep(name));
    let meta = fields.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            if !tags.iter().any(|t| t["system"] == SUBSETTED.0 && t["code"] == SUBSETTED.1) {
                tags.push(json!({"system": SUBSETTED.0, "code": SUBSETTED.1}));
            }
        }
    }
    Value::Object(fields)
}

/// Whether `element` (as written in JSON, `valueQuantity`) is a choice of `name` (`value`).
fn choice_of(element: &str, name: &str) -> bool {
    element.strip_prefix(name).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// `_include` and `_revinclude`, each included resource through the gate like a read of its
/// own: a first round over the matches (the `:iterate` ones too), then the `:iterate` ones once
/// more over what the first round included (one level, R4 §3.1.1.5.4).
/// `everyone`: see [`revinclude_patients`]. `seen` holds what the answer has already (the
/// matches, and what other partitions included), so each resource is read and included once;
/// every storage call is taken from `calls`.
#[allow(clippy::too_many_arguments)]
async fn includes(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    query: &Search,
    partition: &str,
    everyone: &[String],
    hits: &Hits,
    seen: &mut HashSet<String>,
    calls: &Calls,
) -> Result<Vec<Box<RawValue>>, IncludeError> {
    if query.includes.is_empty() && query.revincludes.is_empty() && query.more.iterate.is_empty() {
        return Ok(Vec::new());
    }
    let matched: Vec<Value> = hits.iter().filter_map(|(_, r)| serde_json::from_str(r.get()).ok()).collect();
    let iterate: Vec<(&str, &str, bool)> = query.more.iterate.iter().map(|(i, rev)| (i.source.as_str(), i.param.as_str(), *rev)).collect();
    let first: Vec<(&str, &str, bool)> = query
        .includes
        .iter()
        .map(|(s, p)| (s.as_str(), p.as_str(), false))
        .chain(query.revincludes.iter().map(|(s, p)| (s.as_str(), p.as_str(), true)))
        .chain(iterate.iter().copied())
        .collect();
    let mut out = include_round(fhir, grant, partition, everyone, &matched, &first, seen, calls).await?;
    if !iterate.is_empty() {
        let included: Vec<Value> = out.iter().filter_map(|r| serde_json::from_str(r.get()).ok()).collect();
        out.extend(include_round(fhir, grant, partition, everyone, &included, &iterate, seen, calls).await?);
    }
    Ok(out)
}

/// The includes of a search that ran in several partitions (patient data without patient
/// context): each match's includes are found from its own partition, as if searched there, so
/// the gate and the compartment rules are those of that partition; each resource once.
async fn includes_by_partition(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    query: &Search,
    targets: &[(String, Filter)],
    everyone: &[String],
    hits: &Hits,
    calls: &Calls,
) -> Result<Vec<Box<RawValue>>, IncludeError> {
    if query.includes.is_empty() && query.revincludes.is_empty() && query.more.iterate.is_empty() {
        return Ok(Vec::new());
    }
    let mut groups: Vec<(&str, Hits)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (id, r) in hits {
        let value: Value = serde_json::from_str(r.get()).unwrap_or_default();
        seen.insert(key_of(&value));
        // The partition the match was found in: where the store places it, one of the targets.
        let Ok(home) = crate::fhir::store::partition_for(&value) else { continue };
        let Some((partition, _)) = targets.iter().find(|(p, _)| *p == home) else { continue };
        match groups.iter_mut().find(|(p, _)| *p == partition.as_str()) {
            Some((_, group)) => group.push((id.clone(), r.clone())),
            None => groups.push((partition.as_str(), vec![(id.clone(), r.clone())])),
        }
    }
    // Each group with its own `seen` (its matches): a target another group included is still
    // followed by this group's `:iterate` round, which searches this group's partition.
    let mut out = Vec::new();
    for (partition, group) in groups {
        let mut group_seen = group.iter().filter_map(|(_, r)| serde_json::from_str::<Value>(r.get()).ok()).map(|v| key_of(&v)).collect();
        for r in includes(fhir, grant, query, partition, everyone, &group, &mut group_seen, calls).await? {
            let value: Value = serde_json::from_str(r.get()).unwrap_or_default();
            if seen.insert(key_of(&value)) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn key_of(resource: &Value) -> String {
    let (t, id) = type_and_id(resource);
    format!("{t}/{id}")
}

/// One round of includes over `from`: `(source, param, reverse)` each.
#[allow(clippy::too_many_arguments)]
async fn include_round(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    partition: &str,
    everyone: &[String],
    from: &[Value],
    rules: &[(&str, &str, bool)],
    seen: &mut HashSet<String>,
    calls: &Calls,
) -> Result<Vec<Box<RawValue>>, IncludeError> {
    let mut out = Vec::new();
    for &(source, name, reverse) in rules {
        if reverse {
            revinclude(fhir, grant, partition, everyone, from, source, name, seen, &mut out, calls).await?;
            continue;
        }
        let mut targets: Vec<String> = from.iter().filter(|r| type_and_id(r).0 == source).flat_map(|r| search::references(r, source, name)).collect();
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
                // Not patient data: always in its type's shared partition (`store::partition_for`).
                _ if !is_patient_data(t) => Some(shared_partition(t)),
                _ => {
                    calls.spend()?;
                    super::read::directory(fhir, t, id).await?
                }
            };
            let Some(where_) = place_of else { continue };
            // Patient data looked for in the current compartment may be kept in its type's
            // shared partition instead (it names no patient): looked for there next, through
            // the gate of that place (scopes that reach every compartment only).
            let shared = (t != "Patient" && is_patient_data(t) && where_ == partition).then(|| shared_partition(t));
            for place in std::iter::once(where_).chain(shared) {
                let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&place)) else { continue };
                calls.spend()?;
                let read = fhir.store.read(&place, t, id, None).await?;
                if read.status != crate::fhir::store::ReadStatus::Missing {
                    if let Some(content) = read.content.filter(|_| read.status == crate::fhir::store::ReadStatus::Found) {
                        let value: Value = serde_json::from_str(content.get()).unwrap_or_default();
                        if filter.admits(&value) && seen.insert(target.clone()) {
                            out.push(content);
                        }
                    }
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Most patient compartments a `_revinclude` of patient data from a `Patient` search without
/// patient context visits (one per matched patient).
const MAX_REVINCLUDE_PARTITIONS: usize = 50;

/// `_revinclude=source:name` over `from`: the `source` resources whose `name` references one of
/// them, searched in the partitions they can live in, each through the gate: the shared one,
/// the current patient's, or (patient data revincluded from a search run in a shared
/// partition or the directory) each matched patient's own compartment for references to a
/// Patient, and the compartments the caller reaches (`everyone` when that is every patient)
/// for references to anything else.
#[allow(clippy::too_many_arguments)]
async fn revinclude(
    fhir: &Fhir<'_>,
    grant: &AccessGrant,
    partition: &str,
    everyone: &[String],
    from: &[Value],
    source: &str,
    name: &str,
    seen: &mut HashSet<String>,
    out: &mut Vec<Box<RawValue>>,
    calls: &Calls,
) -> Result<(), IncludeError> {
    let Ok(usable) = gate::usable(grant, source, Permissions::READ) else { return Ok(()) };
    let mut refs: Vec<String> = from.iter().map(key_of).collect();
    refs.sort();
    refs.dedup();
    let places: Vec<(String, Vec<String>)> = if !is_patient_data(source) {
        vec![(shared_partition(source), refs)]
    } else if partition.starts_with("patient/") {
        vec![(partition.to_owned(), refs)]
    } else {
        // Patient data about shared resources lives in every compartment: the matched
        // patients' own compartments are searched for references to them, the compartments the
        // caller reaches for references to anything else.
        let (patients, others): (Vec<String>, Vec<String>) = refs.into_iter().partition(|r| r.starts_with("Patient/"));
        let mut places: Vec<(String, Vec<String>)> = patients
            .into_iter()
            .filter_map(|r| r.strip_prefix("Patient/").map(|id| (patient_partition(id), vec![r.clone()])))
            .take(MAX_REVINCLUDE_PARTITIONS)
            .collect();
        if !others.is_empty() {
            let reached: Vec<String> = match gate::reach(&usable) {
                Reach::Patients(set) => set.into_iter().collect(),
                Reach::All => everyone.to_vec(),
            };
            for p in reached {
                let at = patient_partition(&p);
                match places.iter_mut().find(|(w, _)| *w == at) {
                    Some((_, refs)) => refs.extend(others.iter().cloned()),
                    None => places.push((at, others.clone())),
                }
            }
        }
        places
    };
    for (where_, refs) in places {
        let Some(filter) = gate::at(&usable, grant, Permissions::READ, Place::of_partition(&where_)) else { continue };
        for chunk in refs.chunks(search::MAX_BOUND / 2) {
            let mut rev = search::parse(source, &[], false).map_err(|e| StoreError(e.to_string()))?;
            rev.clauses.push(Clause::Reference { name: name.to_owned(), any_of: chunk.to_vec() });
            rev.filters = filter.groups();
            rev.count = 500;
            calls.spend()?;
            for (id, r) in fhir.store.search(&where_, &rev).await?.resources {
                if seen.insert(format!("{source}/{id}")) {
                    out.push(r);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "find_tests.rs"]
mod tests;
