// The authorization boundary of the FHIR API (issue 8), tried from the attacker's side on
// workerd with the Synthea fixtures: each test is the exact request that crossed the boundary
// before the one gate (platform::fhir::gate) and what must answer now.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./helpers/worker.mjs";
import { seed, NED, BUSTER, PRACTITIONER, PATIENT_USER, PASSWORD, APP } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";

const CLIENT = { ...APP, client_id: "boundary-app", scope: "launch launch/patient openid fhirUser patient/*.cruds user/*.cruds", consent: "pre-approved" };
const RELATED = { username: "rel", display_name: "A Relative", fhir_user: "RelatedPerson/r-1", password: PASSWORD };
const LAB = "http://terminology.hl7.org/CodeSystem/observation-category";

let w;
const tokens = {};

async function token(scope, options = {}) {
  const { code, verifier } = await authorize(w, { client_id: CLIENT.client_id, scope, ...options });
  const body = (await exchange(w, code, verifier, { client_id: CLIENT.client_id })).body;
  assert.ok(body.access_token, JSON.stringify(body));
  return body.access_token;
}

async function fhir(path, { as, method = "GET", body, headers = {} } = {}) {
  const res = await w.fetch(`/fhir${path}`, {
    method,
    headers: { Authorization: `Bearer ${tokens[as]}`, ...(body !== undefined ? { "Content-Type": "application/fhir+json" } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { res, body: text ? JSON.parse(text) : null };
}

const obs = (patient, category, extra = {}) => ({
  resourceType: "Observation", status: "final", subject: { reference: `Patient/${patient}` },
  category: [{ coding: [{ system: LAB, code: category }] }], code: { coding: [{ system: "http://loinc.org", code: "2339-0" }] }, ...extra,
});
const categories = (bundle) => new Set(bundle.entry.filter((e) => e.search.mode === "match").flatMap((e) => e.resource.category.flatMap((c) => c.coding.map((x) => x.code))));
const transaction = (entry, type = "transaction") => ({ resourceType: "Bundle", type, entry });

/** An Observation of BUSTER's (as the practitioner sees it). */
async function bustersObservation() {
  const found = await fhir(`/Observation?patient=${BUSTER}&_count=1`, { as: "doctor" });
  return found.body.entry[0].resource;
}

before(async () => {
  w = await startWorker();
  await seed(w, { clients: [CLIENT], users: [PRACTITIONER, PATIENT_USER, RELATED] });
  tokens.ned = await token("launch/patient patient/*.cruds");
  tokens.doctor = await token("openid fhirUser user/*.cruds");
  tokens.starLab = await token("launch/patient patient/*.rs?category=laboratory");
  tokens.labWriter = await token("launch/patient patient/Observation.cruds?category=laboratory");
  tokens.mixed = await token("launch/patient openid fhirUser patient/Observation.rs user/Observation.rs?category=vital-signs");
  tokens.related = await token("openid fhirUser user/*.rs", { user: RELATED });
  tokens.twoFilters = await token("launch/patient patient/Observation.rus?category=laboratory patient/Observation.rus?category=vital-signs");
});
after(() => w?.dispose());

describe("confirmed on the wire (issue 8)", () => {
  test("1. a granular scope filters every type it names and grants nothing where it cannot apply", async () => {
    const patient = await fhir(`/Patient/${NED}`, { as: "starLab" });
    assert.equal(patient.res.status, 403, "Patient has no category: patient/*.rs?category=laboratory grants nothing on it");
    assert.match(patient.res.headers.get("www-authenticate"), /insufficient_scope/);
    const all = await fhir(`/Observation?_count=500`, { as: "starLab" });
    assert.equal(all.res.status, 200);
    assert.ok(all.body.total > 0);
    assert.deepEqual([...categories(all.body)], ["laboratory"]);
  });

  test("2. a patient/ token writes nothing outside its compartment: no shared resource through a bundle, no DELETE", async () => {
    const put = await fhir("", { as: "ned", method: "POST", body: transaction([
      { resource: { resourceType: "Practitioner", id: "planted", name: [{ family: "Mallory" }] }, request: { method: "PUT", url: "Practitioner/planted" } },
    ]) });
    assert.equal(put.res.status, 403);
    assert.equal(put.body.resourceType, "OperationOutcome");
    assert.equal((await fhir("/Practitioner/planted", { as: "doctor" })).res.status, 404, "nothing was written");
    const someone = (await fhir("/Practitioner?_count=1", { as: "doctor" })).body.entry[0].resource;
    const del = await fhir(`/Practitioner/${someone.id}`, { as: "ned", method: "DELETE" });
    assert.equal(del.res.status, 403);
    assert.equal((await fhir(`/Practitioner/${someone.id}`, { as: "doctor" })).res.status, 200);
  });

  test("3. a bundle cannot hijack another compartment's id, by POST fullUrl or by PUT", async () => {
    const theirs = await bustersObservation();
    const post = await fhir("", { as: "ned", method: "POST", body: transaction([
      { fullUrl: `urn:uuid:${theirs.id}`, resource: obs(NED, "laboratory", { valueString: "forged" }), request: { method: "POST", url: "Observation" } },
    ]) });
    assert.equal(post.res.status, 200, JSON.stringify(post.body));
    const location = post.body.entry[0].response.location;
    assert.notEqual(location, `Observation/${theirs.id}`, "a taken id is not reused");
    const put = await fhir("", { as: "ned", method: "POST", body: transaction([
      { resource: { ...obs(NED, "laboratory", { valueString: "forged" }), id: theirs.id }, request: { method: "PUT", url: `Observation/${theirs.id}` } },
    ]) });
    assert.equal(put.res.status, 403);
    const moved = await fhir(`/Observation/${theirs.id}`, { as: "doctor", method: "PUT", body: { ...theirs, subject: { reference: `Patient/${NED}` } } });
    assert.equal(moved.res.status, 422, "even a practitioner cannot move a resource to another compartment");
    const after = await fhir(`/Observation/${theirs.id}`, { as: "doctor" });
    assert.equal(after.body.subject.reference, `Patient/${BUSTER}`);
    assert.equal(after.body.meta.versionId, theirs.meta.versionId, "the original is untouched");
  });

  test("4. a create never overwrites: a batch POST whose fullUrl names an existing id gets a new id", async () => {
    const theirs = await bustersObservation();
    const res = await fhir("", { as: "doctor", method: "POST", body: transaction([
      { fullUrl: `urn:uuid:${theirs.id}`, resource: obs(BUSTER, "survey", { valueString: "replacement" }), request: { method: "POST", url: "Observation" } },
    ], "batch") });
    assert.equal(res.res.status, 200);
    assert.equal(res.body.entry[0].response.status, "201 Created");
    assert.notEqual(res.body.entry[0].response.location, `Observation/${theirs.id}`);
    const after = await fhir(`/Observation/${theirs.id}`, { as: "doctor" });
    assert.equal(after.body.meta.versionId, theirs.meta.versionId);
    assert.equal(after.body.valueString, theirs.valueString);
  });

  test("6. search input inside a multibyte character is a 400 OperationOutcome, not a panic", async () => {
    for (const path of ["/Observation?date=abc%C3%A9xx", "/Patient?_lastUpdated=2020-01-01T10:0%C3%A9", "/Observation?date=2020-0%C3%A9", "/Observation?value-quantity=%C3%A95"]) {
      const res = await fhir(path, { as: "doctor" });
      assert.equal(res.res.status, 400, path);
      assert.equal(res.body.resourceType, "OperationOutcome");
    }
  });

  test("8. scopes of different contexts are not pooled: another patient's results pass the user/ scope's filter only", async () => {
    const theirs = await fhir(`/Observation?patient=${BUSTER}&_count=500`, { as: "mixed" });
    assert.equal(theirs.res.status, 200);
    assert.ok(theirs.body.total > 0);
    assert.deepEqual([...categories(theirs.body)], ["vital-signs"]);
    const mine = await fhir(`/Observation?patient=${NED}&_count=500`, { as: "mixed" });
    assert.ok(categories(mine.body).has("laboratory"), "the launch patient's results are unfiltered");
    const lab = (await fhir(`/Observation?patient=${BUSTER}&category=laboratory&_count=1`, { as: "doctor" })).body.entry[0].resource;
    assert.equal((await fhir(`/Observation/${lab.id}`, { as: "mixed" })).res.status, 404);
  });
});

describe("found by reading (issue 8)", () => {
  test("writes obey granular filters: create, update and delete only what the filter matches", async () => {
    const vital = await fhir("/Observation", { as: "labWriter", method: "POST", body: obs(NED, "vital-signs") });
    assert.equal(vital.res.status, 403);
    const lab = await fhir("/Observation", { as: "labWriter", method: "POST", body: obs(NED, "laboratory") });
    assert.equal(lab.res.status, 201);
    const relabel = await fhir(`/Observation/${lab.body.id}`, { as: "labWriter", method: "PUT", body: { ...lab.body, category: [{ coding: [{ system: LAB, code: "vital-signs" }] }] } });
    assert.equal(relabel.res.status, 403, "an update may not take a resource out of the filter");
    const someVital = (await fhir(`/Observation?category=vital-signs&_count=1`, { as: "ned" })).body.entry[0].resource;
    // What the filter hides is answered as missing (a delete reveals no more than a read) and stays.
    assert.equal((await fhir(`/Observation/${someVital.id}`, { as: "labWriter", method: "DELETE" })).res.status, 204);
    assert.equal((await fhir(`/Observation/${someVital.id}`, { as: "ned" })).res.status, 200);
    assert.equal((await fhir(`/Observation/${lab.body.id}`, { as: "labWriter", method: "DELETE" })).res.status, 204);
  });

  test("If-None-Exist never hands back a resource the caller may not read", async () => {
    const hidden = await fhir("/Observation", { as: "ned", method: "POST", body: obs(NED, "vital-signs", { identifier: [{ system: "urn:t", value: "hidden-1" }] }) });
    assert.equal(hidden.res.status, 201);
    const probe = await fhir("/Observation", { as: "labWriter", method: "POST", body: obs(NED, "laboratory", { identifier: [{ system: "urn:t", value: "hidden-1" }] }), headers: { "If-None-Exist": "identifier=urn:t|hidden-1" } });
    assert.equal(probe.res.status, 201, "the vital-signs match is invisible to a laboratory scope");
    assert.notEqual(probe.body.id, hidden.body.id);
    assert.deepEqual(probe.body.category[0].coding[0].code, "laboratory");
  });

  test("instance history shows no version the filter hides, even when the newest is a deletion", async () => {
    const created = await fhir("/Observation", { as: "ned", method: "POST", body: obs(NED, "vital-signs", { valueString: "v1" }) });
    await fhir(`/Observation/${created.body.id}`, { as: "ned", method: "PUT", body: { ...created.body, valueString: "v2" } });
    assert.equal((await fhir(`/Observation/${created.body.id}`, { as: "ned", method: "DELETE" })).res.status, 204);
    const own = await fhir(`/Observation/${created.body.id}/_history`, { as: "ned" });
    assert.equal(own.body.total, 3);
    const filtered = await fhir(`/Observation/${created.body.id}/_history`, { as: "labWriter" });
    assert.equal(filtered.res.status, 404);
  });

  test("user/ scopes of a RelatedPerson reach no patient's compartment", async () => {
    assert.equal((await fhir(`/Patient/${NED}`, { as: "related" })).res.status, 404);
    assert.equal((await fhir(`/Observation?patient=${NED}`, { as: "related" })).body.total, 0);
    assert.equal((await fhir(`/Patient`, { as: "related" })).body.total, 0);
    assert.equal((await fhir(`/Practitioner?_count=1`, { as: "related" })).body.total > 0, true, "shared reference data stays readable");
  });

  test("a deleted Patient leaves the directory: no longer found by Patient searches", async () => {
    const created = await fhir("/Patient", { as: "doctor", method: "POST", body: { resourceType: "Patient", name: [{ family: "Ephemeral" }] } });
    assert.equal(created.res.status, 201);
    assert.equal((await fhir(`/Patient?name=ephemeral`, { as: "doctor" })).body.total, 1);
    assert.equal((await fhir(`/Patient/${created.body.id}`, { as: "doctor", method: "DELETE" })).res.status, 204);
    assert.equal((await fhir(`/Patient?name=ephemeral`, { as: "doctor" })).body.total, 0);
    assert.equal((await fhir(`/Patient/${created.body.id}`, { as: "doctor" })).res.status, 410);
  });

  test("a bundle from a caller who may write nothing is refused before it is read", async () => {
    const res = await fhir("", { as: "starLab", method: "POST", body: "{not even json" });
    assert.equal(res.res.status, 403);
    assert.equal(res.body.resourceType, "OperationOutcome");
  });
});

describe("found by an adversarial review of the gate", () => {
  test("patient data must name its patient in a form the server resolves; unnamed patient data is not public", async () => {
    for (const reference of [`${w.url}/fhir/Patient/${BUSTER}`, `Patient?identifier=urn:x|1`, `Patient/${BUSTER}/x`]) {
      const res = await fhir("/Observation", { as: "doctor", method: "POST", body: { ...obs(BUSTER, "survey"), subject: { reference } } });
      assert.equal(res.res.status, 422, reference);
      assert.equal(res.body.resourceType, "OperationOutcome");
    }
    const versioned = await fhir("/Observation", { as: "doctor", method: "POST", body: { ...obs(NED, "survey"), subject: { reference: `Patient/${NED}/_history/1` } } });
    assert.equal(versioned.res.status, 201);
    assert.equal((await fhir(`/Observation/${versioned.body.id}`, { as: "ned" })).res.status, 200, "a versioned reference is the patient's");
    const unnamed = await fhir("/Observation", { as: "doctor", method: "POST", body: { resourceType: "Observation", status: "final", code: { text: "no subject" } } });
    assert.equal(unnamed.res.status, 201);
    assert.equal((await fhir(`/Observation/${unnamed.body.id}`, { as: "ned" })).res.status, 404, "a patient/ token does not see patient data of nobody");
    assert.equal((await fhir(`/Observation/${unnamed.body.id}`, { as: "doctor" })).res.status, 200);
    // Kept shared: a search without patient context finds it too (issue 12), a patient's never.
    const byDoctor = await fhir(`/Observation?_id=${unnamed.body.id}`, { as: "doctor" });
    assert.deepEqual(byDoctor.body.entry.map((e) => e.resource.id), [unnamed.body.id]);
    const byNed = await fhir(`/Observation?_id=${unnamed.body.id}`, { as: "ned" });
    assert.equal(byNed.res.status, 200);
    assert.deepEqual(byNed.body.entry ?? [], []);
  });

  test("a bundle may not name one resource twice, nor carry conditions it would ignore", async () => {
    const twice = await fhir("", { as: "doctor", method: "POST", body: transaction([
      { fullUrl: "urn:uuid:dup", resource: obs(NED, "survey"), request: { method: "POST", url: "Observation" } },
      { fullUrl: "urn:uuid:dup", resource: obs(BUSTER, "survey"), request: { method: "POST", url: "Observation" } },
    ]) });
    assert.equal(twice.res.status, 400);
    // ifNoneExist is honoured (tests/transactions.test.mjs); ifNoneMatch is not, so it is refused.
    const conditional = await fhir("", { as: "doctor", method: "POST", body: transaction([
      { resource: obs(NED, "survey"), request: { method: "POST", url: "Observation" } },
      { request: { method: "GET", url: `Patient/${NED}`, ifNoneMatch: 'W/"1"' } },
    ]) });
    assert.equal(conditional.res.status, 400);
    assert.match(conditional.body.issue[0].diagnostics, /ifNoneMatch/);
  });

  test("search numbers must be finite and pages bounded", async () => {
    for (const q of ["value-quantity=lt1e999", "value-quantity=nan", "_offset=18446744073709551615", "_offset=10001"]) {
      const res = await fhir(`/Observation?${q}`, { as: "doctor" });
      assert.equal(res.res.status, 400, q);
    }
  });

  test("one scope must allow a whole update: two scopes' filters do not add up", async () => {
    const lab = (await fhir(`/Observation?patient=${NED}&category=laboratory&_count=1`, { as: "ned" })).body.entry[0].resource;
    const moved = await fhir(`/Observation/${lab.id}`, { as: "twoFilters", method: "PUT", body: { ...lab, category: [{ coding: [{ system: LAB, code: "vital-signs" }] }] } });
    assert.equal(moved.res.status, 403);
    const kept = await fhir(`/Observation/${lab.id}`, { as: "twoFilters", method: "PUT", body: { ...lab, status: "amended" } });
    assert.equal(kept.res.status, 200);
  });
});
