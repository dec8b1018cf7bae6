#![allow(dead_code)]
//! An independent model of the server's SMART on FHIR access policy, used as
//! the oracle of the access model test.
//!
//! It is written from the written policy and from SMART App Launch 2.2,
//! §"Scopes and Launch Context" → §"Scopes for requesting FHIR resources"
//! (<https://hl7.org/fhir/smart-app-launch/STU2.2/scopes-and-launch-context.html>),
//! NOT from the server's code, so that the two can be compared over many
//! generated cases.
//!
//! In short:
//! * a resource scope is `context/Type.perms[?query]` (context `patient`, `user`
//!   or `system`; `Type` a type or `*`; perms v2 letters `cruds` in order, or
//!   v1 `read` / `write` / `*`; a query only with v2 letters);
//! * every scope is judged on its own: an operation passes when one scope has
//!   the type, the permission, the reach and the matching constraints;
//! * a scope whose query cannot be enforced on a type grants nothing on it
//!   (fail closed), and a malformed scope grants nothing at all;
//! * before anything else, an operation on type T needing permission p is
//!   `Forbidden` unless some scope is "usable for (T, p)".

// ---------------------------------------------------------------------------
// The interface
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Grant {
    /// Scope tokens as granted, e.g. "patient/Observation.rs?category=laboratory", "user/*.read", "system/*.cruds", "openid", "launch/patient".
    pub scopes: Vec<String>,
    /// The patient in the launch context (the token's `patient` claim), if any.
    pub launch_patient: Option<String>,
    /// The signed-in user (`fhirUser`): "Practitioner/x", "Patient/x", "RelatedPerson/x", "Person/x", or None (backend service / no user).
    pub fhir_user: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Res {
    /// One of: Patient, Observation, Condition, Encounter (patient-compartment types), Practitioner, Organization (shared types).
    pub rtype: String,
    pub id: String,
    /// The patient compartment it belongs to: a Patient's own id; for Observation/Condition/Encounter the subject patient's id, or None when it has no subject; always None for Practitioner/Organization.
    pub patient: Option<String>,
    /// Observation/Condition only: one category code ("laboratory", "vital-signs", "survey", "problem-list-item", ...), system http://terminology.hl7.org/CodeSystem/observation-category (or condition-category).
    pub category: Option<String>,
    /// Observation/Condition only: one code, system http://loinc.org.
    pub code: Option<String>,
    /// Payload, irrelevant to access.
    pub value: i64,
}

/// Current (not deleted) resources; (rtype, id) unique.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub resources: Vec<Res>,
}

#[derive(Clone, Debug)]
pub enum Entry {
    /// POST [type] inside a bundle, with `fullUrl: urn:uuid:{full_url_id}` when Some.
    Post { res: Res, full_url_id: Option<String> },
    /// PUT [type]/[res.id].
    Put { res: Res },
}

#[derive(Clone, Debug)]
pub enum Op {
    /// GET [type]/[id]
    Read { rtype: String, id: String },
    /// GET [type] or GET [type]?patient=X (patient only for Observation/Condition/Encounter)
    Search { rtype: String, patient: Option<String> },
    /// POST [type]; the server assigns a new id (res.id is ignored)
    Create { res: Res },
    /// PUT [type]/[res.id]
    Update { res: Res },
    /// DELETE [type]/[id]
    Delete { rtype: String, id: String },
    /// All-or-nothing.
    Transaction { entries: Vec<Entry> },
    /// Each entry on its own.
    Batch { entries: Vec<Entry> },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Read: the one resource (rtype, id). Search: every matching visible resource, sorted by (rtype, id).
    Found(Vec<(String, String)>),
    /// 201; for Entry::Post also see `created_id`.
    Created,
    /// 200
    Updated,
    /// 204 (also for deleting something that does not exist)
    Deleted,
    /// 403
    Forbidden,
    /// 404 (or 410)
    NotFound,
    /// 422
    Unprocessable,
    /// A transaction that is refused as a whole (any 4xx), nothing written.
    Rejected,
    /// Transaction (when accepted) or batch: one outcome per entry, in order.
    Entries(Vec<Outcome>),
}

/// What the server should answer to `op`, done with `grant`, on `world`.
pub fn expect(world: &World, grant: &Grant, op: &Op) -> Outcome {
    let scopes = resource_scopes(grant);
    let policy = Policy { world, grant, scopes: &scopes };
    match op {
        Op::Read { rtype, id } => policy.read(rtype, id),
        Op::Search { rtype, patient } => policy.search(rtype, patient.as_deref()),
        Op::Create { res } => policy.create(&Target::created_with_fresh_id(res)),
        Op::Update { res } => policy.update(res),
        Op::Delete { rtype, id } => policy.delete(rtype, id),
        Op::Transaction { entries } if names_a_resource_twice(world, entries) => Outcome::Rejected,
        Op::Transaction { entries } => policy.transaction(entries),
        Op::Batch { entries } => Outcome::Entries(batch_outcomes(world, grant, entries)),
    }
}

/// A batch runs its entries one after another (FHIR R4 §3.1.0.11.1: each is processed on its
/// own): an entry meets the world as the entries before it left it.
fn batch_outcomes(world: &World, grant: &Grant, entries: &[Entry]) -> Vec<Outcome> {
    let scopes = resource_scopes(grant);
    let mut world = world.clone();
    let mut outcomes = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let outcome = Policy { world: &world, grant, scopes: &scopes }.entry_outcome(entry);
        let written = match (entry, &outcome) {
            (Entry::Post { res, .. }, Outcome::Created) => {
                // A fresh server id is unknown here; no later entry of the batch can name it.
                let id = created_id(&world, entry).unwrap_or_else(|| format!("~fresh-{n}"));
                let patient = if res.rtype == "Patient" { Some(id.clone()) } else { res.patient.clone() };
                Some(Res { id, patient, ..res.clone() })
            }
            (Entry::Put { res }, Outcome::Created | Outcome::Updated) => Some(res.clone()),
            _ => None,
        };
        if let Some(res) = written {
            world.resources.retain(|r| !(r.rtype == res.rtype && r.id == res.id));
            world.resources.push(res);
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// A transaction is one write of all its entries, so two entries must not name the same
/// resource (a PUT's id, or the free `urn:uuid` id a POST asks for), nor share a `fullUrl`.
fn names_a_resource_twice(world: &World, entries: &[Entry]) -> bool {
    let full_urls: Vec<&String> = entries.iter().filter_map(|e| if let Entry::Post { full_url_id: Some(u), .. } = e { Some(u) } else { None }).collect();
    if full_urls.iter().enumerate().any(|(i, u)| full_urls[..i].contains(u)) {
        return true;
    }
    let mut named = Vec::new();
    for entry in entries {
        let rtype = match entry {
            Entry::Post { res, .. } | Entry::Put { res } => &res.rtype,
        };
        if let Some(id) = created_id(world, entry) {
            if named.contains(&(rtype, id.clone())) {
                return true;
            }
            named.push((rtype, id));
        }
    }
    false
}

/// Whether a DELETE of `rtype/id` by `grant` really removes something (a `Deleted` answer
/// may also stand for "nothing you may see is there").
pub fn deletes(world: &World, grant: &Grant, rtype: &str, id: &str) -> bool {
    let scopes = resource_scopes(grant);
    let policy = Policy { world, grant, scopes: &scopes };
    policy.usable_for(rtype, Perm::Delete) && find(world, rtype, id).is_some_and(|res| policy.some_scope_allows(Perm::Delete, &Target::existing(res)))
}

/// For a POST entry that the oracle expects to be Created: is the id the
/// urn:uuid (Some(id)) or a fresh server id (None)?
///
/// A POST never overwrites: the urn:uuid becomes the id only when no resource
/// of that type has it yet. (For a PUT entry the id is the one in the URL.)
pub fn created_id(world: &World, entry: &Entry) -> Option<String> {
    match entry {
        Entry::Post { res, full_url_id } => full_url_id.as_ref().filter(|id| find(world, &res.rtype, id).is_none()).cloned(),
        Entry::Put { res } => Some(res.id.clone()),
    }
}

// ---------------------------------------------------------------------------
// Scopes: `context/Type.perms[?query]`
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Patient,
    User,
    System,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Perm {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Perm {
    /// Create, update and delete change data; they obey the stricter rule
    /// for shared resources.
    fn is_write(self) -> bool {
        matches!(self, Perm::Create | Perm::Update | Perm::Delete)
    }
}

/// One `name=value` of a scope's query, both percent-decoded.
#[derive(Clone, Debug, PartialEq)]
struct Constraint {
    name: String,
    value: String,
}

#[derive(Clone, Debug, PartialEq)]
struct ResourceScope {
    context: Context,
    /// A type name or `*`.
    rtype: String,
    perms: Vec<Perm>,
    constraints: Vec<Constraint>,
}

impl ResourceScope {
    fn names_type(&self, rtype: &str) -> bool {
        self.rtype == "*" || self.rtype == rtype
    }

    fn has_perm(&self, perm: Perm) -> bool {
        self.perms.contains(&perm)
    }
}

/// The well-formed resource scopes of a grant; everything else (openid,
/// launch/patient, malformed scopes, ...) grants no data access.
fn resource_scopes(grant: &Grant) -> Vec<ResourceScope> {
    grant.scopes.iter().map(String::as_str).filter_map(parse_scope).collect()
}

fn parse_scope(token: &str) -> Option<ResourceScope> {
    // The query comes first: its values may contain '.' and '/'.
    let (head, query) = match token.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (token, None),
    };
    let (context, rest) = head.split_once('/')?;
    let context = parse_context(context)?;
    let (rtype, perms) = rest.split_once('.')?;
    if rtype.is_empty() {
        return None;
    }
    let (perms, is_v2) = parse_permissions(perms)?;
    let constraints = match query {
        None => Vec::new(),
        // "A query is only allowed with v2 letters."
        Some(_) if !is_v2 => return None,
        Some(query) => parse_query(query)?,
    };
    Some(ResourceScope { context, rtype: rtype.to_string(), perms, constraints })
}

fn parse_context(context: &str) -> Option<Context> {
    match context {
        "patient" => Some(Context::Patient),
        "user" => Some(Context::User),
        "system" => Some(Context::System),
        _ => None,
    }
}

/// v1 words `read`, `write`, `*`, or v2 letters from `cruds`, in that order,
/// each at most once. Returns the permissions and whether they were v2.
fn parse_permissions(perms: &str) -> Option<(Vec<Perm>, bool)> {
    use Perm::*;
    match perms {
        "read" => return Some((vec![Read, Search], false)),
        "write" => return Some((vec![Create, Update, Delete], false)),
        "*" => return Some((vec![Create, Read, Update, Delete, Search], false)),
        _ => {}
    }
    if perms.is_empty() {
        return None;
    }
    let order = [('c', Create), ('r', Read), ('u', Update), ('d', Delete), ('s', Search)];
    let mut granted = Vec::new();
    let mut next = 0; // letters must appear in `cruds` order, each once
    for letter in perms.chars() {
        let at = order[next..].iter().position(|(l, _)| *l == letter)? + next;
        granted.push(order[at].1);
        next = at + 1;
    }
    Some((granted, true))
}

/// `name=value&name2=value2`, percent-decoded. Any piece that is not a
/// non-empty `name=value` makes the whole scope malformed.
fn parse_query(query: &str) -> Option<Vec<Constraint>> {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = percent_decode(name)?;
            let value = percent_decode(value)?;
            if name.is_empty() || value.is_empty() {
                return None;
            }
            Some(Constraint { name, value })
        })
        .collect()
}

/// `%XX` → byte; anything else is taken literally ('+' included). Invalid
/// escapes or non-UTF-8 results are malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------
// Query constraints
// ---------------------------------------------------------------------------

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const LOINC: &str = "http://loinc.org";

fn has_category_and_code(rtype: &str) -> bool {
    rtype == "Observation" || rtype == "Condition"
}

/// Can this one constraint be enforced on `rtype`? Only `category` and
/// `code` (Observation, Condition) and `_id` (any type); no modifiers, no
/// control parameters, nothing else.
fn constraint_enforceable_on(constraint: &Constraint, rtype: &str) -> bool {
    match constraint.name.as_str() {
        "_id" => true,
        "category" | "code" => has_category_and_code(rtype),
        _ => false,
    }
}

/// Fail closed: a scope whose query has anything unenforceable on `rtype`
/// grants nothing on `rtype`.
fn constraints_enforceable_on(scope: &ResourceScope, rtype: &str) -> bool {
    scope.constraints.iter().all(|c| constraint_enforceable_on(c, rtype))
}

/// The system a token search on (`rtype`, `param`) is coded in.
fn token_system(rtype: &str, param: &str) -> Option<&'static str> {
    match (rtype, param) {
        ("Observation", "category") => Some(OBSERVATION_CATEGORY),
        ("Condition", "category") => Some(CONDITION_CATEGORY),
        ("Observation" | "Condition", "code") => Some(LOINC),
        _ => None,
    }
}

/// `code` or `system|code` against the resource's one coding.
fn token_matches(value: &str, system: Option<&str>, code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    match value.split_once('|') {
        None => value == code,
        Some((wanted_system, wanted_code)) => system == Some(wanted_system) && wanted_code == code,
    }
}

fn constraint_matches(constraint: &Constraint, target: &Target) -> bool {
    match constraint.name.as_str() {
        // A resource whose id the server has yet to choose matches no `_id`.
        "_id" => target.id.as_deref() == Some(constraint.value.as_str()),
        "category" => token_matches(&constraint.value, token_system(&target.rtype, "category"), target.category.as_deref()),
        "code" => token_matches(&constraint.value, token_system(&target.rtype, "code"), target.code.as_deref()),
        _ => false,
    }
}

fn matches_constraints(scope: &ResourceScope, target: &Target) -> bool {
    scope.constraints.iter().all(|c| constraint_matches(c, target))
}

// ---------------------------------------------------------------------------
// Reach
// ---------------------------------------------------------------------------

/// Where a resource lives, for access purposes.
#[derive(Clone, Debug, PartialEq)]
enum Place {
    /// No compartment: Practitioner, Organization, subject-less
    /// Observation/Condition/Encounter.
    Shared,
    /// The compartment of this patient.
    Compartment(String),
    /// The compartment of a Patient being created whose id the server will
    /// choose: a compartment nobody but "every compartment" reaches.
    FreshPatientCompartment,
}

/// The resource (existing or to be written) an operation is about, with the
/// id it has or will have (None: the server will choose a fresh one).
#[derive(Clone, Debug)]
struct Target {
    rtype: String,
    id: Option<String>,
    place: Place,
    category: Option<String>,
    code: Option<String>,
}

impl Target {
    fn with_id(res: &Res, id: Option<String>) -> Target {
        let place = match res.rtype.as_str() {
            // A Patient is its own compartment.
            "Patient" => match &id {
                Some(id) => Place::Compartment(id.clone()),
                None => Place::FreshPatientCompartment,
            },
            "Practitioner" | "Organization" => Place::Shared,
            _ => match &res.patient {
                Some(patient) => Place::Compartment(patient.clone()),
                None => Place::Shared,
            },
        };
        Target { rtype: res.rtype.clone(), id, place, category: res.category.clone(), code: res.code.clone() }
    }

    /// A resource as it is stored, or as written with a known id.
    fn existing(res: &Res) -> Target {
        Target::with_id(res, Some(res.id.clone()))
    }

    /// A POST [type]: the server chooses the id.
    fn created_with_fresh_id(res: &Res) -> Target {
        Target::with_id(res, None)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum User {
    Practitioner,
    Patient(String),
    /// RelatedPerson, Person, anything else, or no user at all.
    NoCompartment,
}

fn signed_in_user(grant: &Grant) -> User {
    match grant.fhir_user.as_deref().and_then(|u| u.split_once('/')) {
        Some(("Practitioner", _)) => User::Practitioner,
        Some(("Patient", id)) => User::Patient(id.to_string()),
        _ => User::NoCompartment,
    }
}

/// A `patient/` scope needs a launch patient; `user/` and `system/` are
/// always usable.
fn context_usable(context: Context, grant: &Grant) -> bool {
    match context {
        Context::Patient => grant.launch_patient.is_some(),
        Context::User | Context::System => true,
    }
}

/// Does a scope of this context reach the compartment of `patient`?
fn reaches_compartment(context: Context, grant: &Grant, patient: &str) -> bool {
    let user = signed_in_user(grant);
    match context {
        Context::Patient => {
            let Some(launch) = grant.launch_patient.as_deref() else {
                return false;
            };
            // A patient user only ever reaches their own compartment; a RelatedPerson or
            // Person user reaches none (the server cannot tell whose record they may see).
            let user_agrees = match &user {
                User::Patient(me) => me == launch,
                User::Practitioner => true,
                User::NoCompartment => grant.fhir_user.is_none(),
            };
            user_agrees && launch == patient
        }
        Context::User => match &user {
            User::Practitioner => true,
            User::Patient(me) => me == patient,
            User::NoCompartment => false,
        },
        Context::System => true,
    }
}

/// Does a scope of this context reach every compartment (including one that
/// does not exist yet)?
fn reaches_every_compartment(context: Context, grant: &Grant) -> bool {
    match context {
        Context::System => true,
        Context::User => signed_in_user(grant) == User::Practitioner,
        Context::Patient => false,
    }
}

/// Shared resources are readable by any usable scope, writable only by
/// `system/` scopes and by `user/` scopes of a Practitioner.
fn reaches_shared(context: Context, grant: &Grant, write: bool) -> bool {
    if write {
        reaches_every_compartment(context, grant)
    } else {
        context_usable(context, grant)
    }
}

fn reaches(context: Context, grant: &Grant, place: &Place, write: bool, rtype: &str) -> bool {
    match place {
        // Patient data that names no patient is nobody's reference data: only scopes that
        // reach every compartment see or change it.
        Place::Shared if is_patient_compartment_type(rtype) => reaches_every_compartment(context, grant),
        Place::Shared => reaches_shared(context, grant, write),
        Place::Compartment(patient) => reaches_compartment(context, grant, patient),
        Place::FreshPatientCompartment => reaches_every_compartment(context, grant),
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

struct Policy<'a> {
    world: &'a World,
    grant: &'a Grant,
    scopes: &'a [ResourceScope],
}

fn find<'w>(world: &'w World, rtype: &str, id: &str) -> Option<&'w Res> {
    world.resources.iter().find(|r| r.rtype == rtype && r.id == id)
}

fn is_patient_compartment_type(rtype: &str) -> bool {
    matches!(rtype, "Observation" | "Condition" | "Encounter")
}

impl Policy<'_> {
    /// Some scope names `rtype`, has `perm`, has a usable context and has
    /// constraints enforceable on `rtype`. Checked first by every operation.
    fn usable_for(&self, rtype: &str, perm: Perm) -> bool {
        self.scopes.iter().any(|scope| {
            scope.names_type(rtype) && scope.has_perm(perm) && context_usable(scope.context, self.grant) && constraints_enforceable_on(scope, rtype)
        })
    }

    /// One scope allows `perm` on `target` entirely: type, permission,
    /// usable context, enforceable constraints, reach, matching constraints.
    fn scope_allows(&self, scope: &ResourceScope, perm: Perm, target: &Target) -> bool {
        scope.names_type(&target.rtype)
            && scope.has_perm(perm)
            && context_usable(scope.context, self.grant)
            && constraints_enforceable_on(scope, &target.rtype)
            && reaches(scope.context, self.grant, &target.place, perm.is_write(), &target.rtype)
            && matches_constraints(scope, target)
    }

    fn some_scope_allows(&self, perm: Perm, target: &Target) -> bool {
        self.scopes.iter().any(|scope| self.scope_allows(scope, perm, target))
    }

    fn read(&self, rtype: &str, id: &str) -> Outcome {
        if !self.usable_for(rtype, Perm::Read) {
            return Outcome::Forbidden;
        }
        match find(self.world, rtype, id) {
            Some(res) if self.some_scope_allows(Perm::Read, &Target::existing(res)) => Outcome::Found(vec![(res.rtype.clone(), res.id.clone())]),
            // Missing, or in a place this grant may not see: never reveal which.
            _ => Outcome::NotFound,
        }
    }

    fn search(&self, rtype: &str, patient: Option<&str>) -> Outcome {
        if !self.usable_for(rtype, Perm::Search) {
            return Outcome::Forbidden;
        }
        let mut found: Vec<(String, String)> = self
            .world
            .resources
            .iter()
            .filter(|res| res.rtype == rtype)
            // Subject-less clinical resources (kept shared) are found by a search without
            // patient context, for scopes that reach them (`reaches`: every compartment).
            .filter(|res| patient.is_none_or(|p| res.patient.as_deref() == Some(p)))
            .filter(|res| self.some_scope_allows(Perm::Search, &Target::existing(res)))
            .map(|res| (res.rtype.clone(), res.id.clone()))
            .collect();
        found.sort();
        Outcome::Found(found)
    }

    fn create(&self, target: &Target) -> Outcome {
        if self.usable_for(&target.rtype, Perm::Create) && self.some_scope_allows(Perm::Create, target) {
            Outcome::Created
        } else {
            Outcome::Forbidden
        }
    }

    /// PUT [type]/[id]: an update when it exists, else an update-as-create
    /// (which needs a `c` scope; a `u` scope alone does not create).
    fn update(&self, res: &Res) -> Outcome {
        let Some(old) = find(self.world, &res.rtype, &res.id) else {
            return self.create(&Target::existing(res));
        };
        if !self.usable_for(&res.rtype, Perm::Update) {
            return Outcome::Forbidden;
        }
        let old = Target::existing(old);
        let new = Target::existing(res);
        if !self.some_scope_allows(Perm::Update, &old) {
            return Outcome::Forbidden;
        }
        // A resource never moves between compartments, nor to or from shared.
        if old.place != new.place {
            return Outcome::Unprocessable;
        }
        // One scope allows the whole change: the content before and the content after.
        let one_scope_allows_both =
            self.scopes.iter().any(|scope| self.scope_allows(scope, Perm::Update, &old) && self.scope_allows(scope, Perm::Update, &new));
        if !one_scope_allows_both {
            return Outcome::Forbidden;
        }
        Outcome::Updated
    }

    fn delete(&self, rtype: &str, id: &str) -> Outcome {
        if !self.usable_for(rtype, Perm::Delete) {
            return Outcome::Forbidden;
        }
        match find(self.world, rtype, id) {
            None => Outcome::Deleted,
            Some(res) if self.some_scope_allows(Perm::Delete, &Target::existing(res)) => Outcome::Deleted,
            // Refused where the grant can see the resource; elsewhere it answers as for a
            // missing one (and nothing changes), so a delete never reveals what a read hides.
            Some(res) if self.some_scope_allows(Perm::Read, &Target::existing(res)) => Outcome::Forbidden,
            Some(_) => Outcome::Deleted,
        }
    }

    /// Every entry is judged against the world as it was before the bundle.
    fn entry_outcome(&self, entry: &Entry) -> Outcome {
        match entry {
            Entry::Post { res, .. } => self.create(&Target::with_id(res, created_id(self.world, entry))),
            Entry::Put { res } => self.update(res),
        }
    }

    fn entry_outcomes(&self, entries: &[Entry]) -> Vec<Outcome> {
        entries.iter().map(|e| self.entry_outcome(e)).collect()
    }

    fn transaction(&self, entries: &[Entry]) -> Outcome {
        let outcomes = self.entry_outcomes(entries);
        let all_written = outcomes.iter().all(|o| matches!(o, Outcome::Created | Outcome::Updated));
        if all_written {
            Outcome::Entries(outcomes)
        } else {
            Outcome::Rejected
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-written cases, straight from the rules
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn res(rtype: &str, id: &str, patient: Option<&str>) -> Res {
        Res { rtype: rtype.into(), id: id.into(), patient: patient.map(Into::into), category: None, code: None, value: 0 }
    }

    fn obs(id: &str, patient: Option<&str>, category: &str, code: &str) -> Res {
        Res { category: Some(category.into()), code: Some(code.into()), ..res("Observation", id, patient) }
    }

    fn cond(id: &str, patient: Option<&str>, category: &str) -> Res {
        Res { category: Some(category.into()), ..res("Condition", id, patient) }
    }

    fn grant(scopes: &[&str], launch: Option<&str>, user: Option<&str>) -> Grant {
        Grant { scopes: scopes.iter().map(|s| s.to_string()).collect(), launch_patient: launch.map(Into::into), fhir_user: user.map(Into::into) }
    }

    fn world() -> World {
        World {
            resources: vec![
                res("Patient", "p1", Some("p1")),
                res("Patient", "p2", Some("p2")),
                obs("o1", Some("p1"), "laboratory", "1234-5"),
                obs("o2", Some("p1"), "vital-signs", "8867-4"),
                obs("o3", Some("p2"), "laboratory", "1234-5"),
                obs("o4", None, "laboratory", "1234-5"),
                cond("c1", Some("p1"), "laboratory"),
                res("Encounter", "e1", Some("p1")),
                res("Practitioner", "dr", None),
                res("Organization", "org", None),
            ],
        }
    }

    fn read(rtype: &str, id: &str) -> Op {
        Op::Read { rtype: rtype.into(), id: id.into() }
    }

    fn search(rtype: &str, patient: Option<&str>) -> Op {
        Op::Search { rtype: rtype.into(), patient: patient.map(Into::into) }
    }

    fn found(rtype: &str, ids: &[&str]) -> Outcome {
        Outcome::Found(ids.iter().map(|id| (rtype.to_string(), id.to_string())).collect())
    }

    #[test]
    fn v1_read_reaches_the_launch_patient_only() {
        let g = grant(&["patient/Observation.read"], Some("p1"), None);
        let w = world();
        assert_eq!(expect(&w, &g, &read("Observation", "o1")), found("Observation", &["o1"]));
        assert_eq!(expect(&w, &g, &read("Observation", "o3")), Outcome::NotFound);
        assert_eq!(expect(&w, &g, &read("Observation", "nope")), Outcome::NotFound);
        // read = r+s, no write.
        let o = obs("o9", Some("p1"), "laboratory", "1234-5");
        assert_eq!(expect(&w, &g, &Op::Create { res: o }), Outcome::Forbidden);
    }

    #[test]
    fn patient_scope_without_launch_patient_is_forbidden_first() {
        let g = grant(&["patient/*.cruds", "openid", "launch/patient"], None, None);
        assert_eq!(expect(&world(), &g, &read("Observation", "nope")), Outcome::Forbidden);
        assert_eq!(expect(&world(), &g, &read("Organization", "org")), Outcome::Forbidden);
    }

    #[test]
    fn unknown_parameter_grants_nothing() {
        let g = grant(&["patient/Observation.rs?foo=bar"], Some("p1"), None);
        assert_eq!(expect(&world(), &g, &read("Observation", "o1")), Outcome::Forbidden);
        let g = grant(&["patient/Observation.rs?code:text=x"], Some("p1"), None);
        assert_eq!(expect(&world(), &g, &search("Observation", None)), Outcome::Forbidden);
        let g = grant(&["patient/Observation.rs?_count=10"], Some("p1"), None);
        assert_eq!(expect(&world(), &g, &read("Observation", "o1")), Outcome::Forbidden);
    }

    #[test]
    fn wildcard_category_filter_applies_to_observation_and_condition_only() {
        let g = grant(&["patient/*.rs?category=laboratory"], Some("p1"), None);
        let w = world();
        assert_eq!(expect(&w, &g, &read("Observation", "o1")), found("Observation", &["o1"]));
        assert_eq!(expect(&w, &g, &read("Observation", "o2")), Outcome::NotFound);
        assert_eq!(expect(&w, &g, &read("Condition", "c1")), found("Condition", &["c1"]));
        assert_eq!(expect(&w, &g, &read("Patient", "p1")), Outcome::Forbidden);
        assert_eq!(expect(&w, &g, &search("Encounter", None)), Outcome::Forbidden);
        assert_eq!(expect(&w, &g, &read("Organization", "org")), Outcome::Forbidden);
        assert_eq!(expect(&w, &g, &search("Observation", None)), found("Observation", &["o1"]));
    }

    #[test]
    fn category_with_system_must_name_the_right_system() {
        let encoded = "patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory";
        let g = grant(&[encoded], Some("p1"), None);
        assert_eq!(expect(&world(), &g, &read("Observation", "o1")), found("Observation", &["o1"]));
        let wrong = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|laboratory";
        let g = grant(&[wrong], Some("p1"), None);
        assert_eq!(expect(&world(), &g, &read("Observation", "o1")), Outcome::NotFound);
        let loinc = "patient/Observation.rs?code=http://loinc.org|8867-4";
        let g = grant(&[loinc], Some("p1"), None);
        assert_eq!(expect(&world(), &g, &search("Observation", None)), found("Observation", &["o2"]));
    }

    #[test]
    fn malformed_scopes_grant_nothing() {
        for bad in [
            "patient/Observation.read?category=laboratory", // query with v1
            "patient/Observation.sr",                       // out of order
            "patient/Observation.rr",                       // repeated
            "patient/Observation.rx",                       // unknown letter
            "patient/Observation.",                         // no permission
            "patient/Observation",                          // no dot
            "clinic/Observation.rs",                        // unknown context
        ] {
            let g = grant(&[bad], Some("p1"), None);
            assert_eq!(expect(&world(), &g, &read("Observation", "o1")), Outcome::Forbidden, "{bad}");
        }
    }

    #[test]
    fn patient_user_with_other_launch_patient_reaches_no_compartment() {
        let g = grant(&["patient/*.rs"], Some("p2"), Some("Patient/p1"));
        let w = world();
        assert_eq!(expect(&w, &g, &read("Observation", "o3")), Outcome::NotFound);
        assert_eq!(expect(&w, &g, &read("Observation", "o1")), Outcome::NotFound);
        assert_eq!(expect(&w, &g, &read("Practitioner", "dr")), found("Practitioner", &["dr"]));
        assert_eq!(expect(&w, &g, &search("Observation", None)), found("Observation", &[]));
    }

    #[test]
    fn user_scopes_follow_the_user() {
        let w = world();
        let doctor = grant(&["user/*.read"], None, Some("Practitioner/dr"));
        assert_eq!(expect(&w, &doctor, &search("Patient", None)), found("Patient", &["p1", "p2"]));
        let me = grant(&["user/*.read"], None, Some("Patient/p2"));
        assert_eq!(expect(&w, &me, &search("Observation", None)), found("Observation", &["o3"]));
        assert_eq!(expect(&w, &me, &read("Patient", "p1")), Outcome::NotFound);
        let relative = grant(&["user/*.read"], None, Some("RelatedPerson/rp"));
        assert_eq!(expect(&w, &relative, &read("Patient", "p1")), Outcome::NotFound);
        assert_eq!(expect(&w, &relative, &read("Organization", "org")), found("Organization", &["org"]));
    }

    #[test]
    fn shared_resources_are_written_only_by_system_or_practitioner() {
        let w = world();
        let org = res("Organization", "org", None);
        let g = grant(&["patient/Organization.cu"], Some("p1"), None);
        assert_eq!(expect(&w, &g, &Op::Create { res: org.clone() }), Outcome::Forbidden);
        let g = grant(&["user/Organization.cu"], None, Some("Patient/p1"));
        assert_eq!(expect(&w, &g, &Op::Update { res: org.clone() }), Outcome::Forbidden);
        let g = grant(&["user/Organization.cu"], None, Some("Practitioner/dr"));
        assert_eq!(expect(&w, &g, &Op::Update { res: org.clone() }), Outcome::Updated);
        let g = grant(&["system/*.c"], None, None);
        assert_eq!(expect(&w, &g, &Op::Create { res: org }), Outcome::Created);
    }

    #[test]
    fn update_checks_old_then_compartment_then_new() {
        let w = world();
        let g = grant(&["patient/Observation.u?category=laboratory"], Some("p1"), None);
        // Old is vital-signs: not reached.
        let o2 = obs("o2", Some("p1"), "laboratory", "8867-4");
        assert_eq!(expect(&w, &g, &Op::Update { res: o2 }), Outcome::Forbidden);
        // Moving o1 to p2: unprocessable.
        let moved = obs("o1", Some("p2"), "laboratory", "1234-5");
        assert_eq!(expect(&w, &g, &Op::Update { res: moved }), Outcome::Unprocessable);
        // New no longer matches the filter.
        let recat = obs("o1", Some("p1"), "vital-signs", "1234-5");
        assert_eq!(expect(&w, &g, &Op::Update { res: recat }), Outcome::Forbidden);
        let fine = Res { value: 7, ..obs("o1", Some("p1"), "laboratory", "1234-5") };
        assert_eq!(expect(&w, &g, &Op::Update { res: fine }), Outcome::Updated);
    }

    #[test]
    fn update_as_create_needs_create() {
        let w = world();
        let new = obs("o9", Some("p1"), "laboratory", "1234-5");
        let g = grant(&["patient/Observation.u"], Some("p1"), None);
        assert_eq!(expect(&w, &g, &Op::Update { res: new.clone() }), Outcome::Forbidden);
        let g = grant(&["patient/Observation.cu"], Some("p1"), None);
        assert_eq!(expect(&w, &g, &Op::Update { res: new }), Outcome::Created);
    }

    #[test]
    fn delete_rules() {
        let w = world();
        let g = grant(&["patient/Observation.d"], Some("p1"), None);
        let del = |id: &str| Op::Delete { rtype: "Observation".into(), id: id.into() };
        assert_eq!(expect(&w, &g, &del("nope")), Outcome::Deleted);
        assert_eq!(expect(&w, &g, &del("o1")), Outcome::Deleted);
        // Another compartment's and shared patient data: unreadable, so answered as missing.
        assert_eq!(expect(&w, &g, &del("o3")), Outcome::Deleted);
        assert!(!deletes(&w, &g, "Observation", "o3"));
        assert_eq!(expect(&w, &g, &del("o4")), Outcome::Deleted); // shared
        let reader = grant(&["patient/Observation.rs", "patient/Observation.d?category=vital-signs"], Some("p1"), None);
        assert_eq!(expect(&w, &reader, &del("o1")), Outcome::Forbidden, "visible, but no delete scope matches it");
        let g = grant(&["patient/Observation.rs"], Some("p1"), None);
        assert_eq!(expect(&w, &g, &del("nope")), Outcome::Forbidden);
    }

    #[test]
    fn search_finds_subjectless_clinical_resources_without_patient_context_and_filters_by_patient() {
        let w = world();
        let g = grant(&["system/Observation.rs"], None, None);
        assert_eq!(expect(&w, &g, &search("Observation", None)), found("Observation", &["o1", "o2", "o3", "o4"]));
        assert_eq!(expect(&w, &g, &search("Observation", Some("p2"))), found("Observation", &["o3"]));
        assert_eq!(expect(&w, &g, &read("Observation", "o4")), found("Observation", &["o4"]));
        // A scope confined to a patient reaches no shared patient data.
        let p1 = grant(&["patient/Observation.rs"], Some("p1"), None);
        assert!(!matches!(expect(&w, &p1, &search("Observation", None)), Outcome::Found(ref f) if f.iter().any(|(_, id)| id == "o4")));
    }

    #[test]
    fn scopes_are_not_pooled() {
        let w = world();
        // The system scope reaches everything but has no `s`; the patient
        // scope has `s` but only for p1's laboratory observations.
        let g = grant(&["patient/Observation.rs?category=laboratory", "system/Observation.r"], Some("p1"), None);
        assert_eq!(expect(&w, &g, &search("Observation", None)), found("Observation", &["o1"]));
        assert_eq!(expect(&w, &g, &read("Observation", "o3")), found("Observation", &["o3"]));
    }

    #[test]
    fn transaction_is_all_or_nothing_batch_is_not() {
        let w = world();
        let g = grant(&["patient/Observation.cru"], Some("p1"), None);
        let mine = Entry::Post { res: obs("x", Some("p1"), "laboratory", "1"), full_url_id: Some("n1".into()) };
        let update = Entry::Put { res: obs("o1", Some("p1"), "survey", "1") };
        let theirs = Entry::Post { res: obs("y", Some("p2"), "laboratory", "1"), full_url_id: None };
        let ok = vec![mine.clone(), update.clone()];
        assert_eq!(expect(&w, &g, &Op::Transaction { entries: ok }), Outcome::Entries(vec![Outcome::Created, Outcome::Updated]));
        let bad = vec![mine.clone(), theirs.clone()];
        assert_eq!(expect(&w, &g, &Op::Transaction { entries: bad.clone() }), Outcome::Rejected);
        assert_eq!(expect(&w, &g, &Op::Batch { entries: bad }), Outcome::Entries(vec![Outcome::Created, Outcome::Forbidden]));
        assert_eq!(expect(&w, &g, &Op::Transaction { entries: vec![] }), Outcome::Entries(vec![]));
    }

    #[test]
    fn created_id_uses_free_urn_uuid_only() {
        let w = world();
        let post = |id: Option<&str>| Entry::Post { res: obs("ignored", Some("p1"), "laboratory", "1"), full_url_id: id.map(Into::into) };
        assert_eq!(created_id(&w, &post(Some("fresh"))), Some("fresh".into()));
        assert_eq!(created_id(&w, &post(Some("o1"))), None);
        assert_eq!(created_id(&w, &post(None)), None);
    }

    #[test]
    fn non_resource_scopes_grant_nothing() {
        let g = grant(&["openid", "fhirUser", "launch", "launch/patient", "offline_access", "profile"], Some("p1"), Some("Patient/p1"));
        assert_eq!(expect(&world(), &g, &read("Patient", "p1")), Outcome::Forbidden);
    }
}
