// Bulk Data Access 2.0.0 `$export` on workerd (https://hl7.org/fhir/uv/bulkdata/STU2/export.html):
// backend-services tokens (client_credentials + private_key_jwt), system, Patient and Group
// kick-offs (GET and POST Parameters), polling with X-Progress and Retry-After, the manifest,
// the NDJSON files behind the token (only for the client that started the export), DELETE,
// and the scopes: types, granular filters, user and patient tokens refused. Every exported
// resource is validated against R4 by an independent implementation (fhir.resources).
//
// No Bulk Data client installs from a registry here (no `bulk-data-client` on npm;
// cumulus-etl on PyPI did not resolve its dependencies in time), so these are wire tests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import * as jose from "jose";
import { startWorker, tempDir, ROOT, adminHeaders } from "./helpers/worker.mjs";
import { seed, APP, NED, BUSTER } from "./helpers/fixtures.mjs";
import { authorize, exchange, form } from "./helpers/flows.mjs";
import { hospitalBundle, practitionerBundle, patientBundle } from "./fixtures/transactions/generate.mjs";

let w;
let key;
const tokens = {};
const USER_APP = { ...APP, client_id: "bulk-user-app", scope: "launch launch/patient openid fhirUser patient/*.rs user/*.rs", consent: "pre-approved" };
const FHIR_JSON = "application/fhir+json";

// What the fixtures hold, by type: the ids the exports must return exactly; and by patient,
// the compartment's (every resource of a patient's bundle but the shared Organization and
// Practitioner).
const fixtures = {};
const byPatient = {};
/** Observation ids by LOINC code and by category code. */
const observations = { code: {}, category: {} };
for (const file of readdirSync(join(ROOT, "tests", "fixtures", "synthea")).filter((f) => f.endsWith(".json"))) {
  const bundle = JSON.parse(readFileSync(join(ROOT, "tests", "fixtures", "synthea", file), "utf8"));
  const patient = bundle.entry.find((e) => e.resource.resourceType === "Patient").resource.id;
  byPatient[patient] = {};
  for (const { resource } of bundle.entry) {
    (fixtures[resource.resourceType] ??= []).push(resource.id);
    if (!["Organization", "Practitioner"].includes(resource.resourceType)) (byPatient[patient][resource.resourceType] ??= []).push(resource.id);
    if (resource.resourceType === "Observation") {
      for (const c of resource.code.coding) (observations.code[c.code] ??= []).push(resource.id);
      for (const cc of resource.category ?? []) for (const c of cc.coding) (observations.category[c.code] ??= []).push(resource.id);
    }
  }
}
for (const ids of Object.values(fixtures)) ids.sort();

async function backendToken(clientId, scope) {
  const assertion = await new jose.SignJWT({ iss: clientId, sub: clientId, aud: `${w.url}/auth/token`, jti: randomUUID() })
    .setProtectedHeader({ alg: "ES384", kid: key.kid, typ: "JWT" })
    .setExpirationTime("4m")
    .sign(key.privateKey);
  const res = await w.fetch("/auth/token", form({
    grant_type: "client_credentials",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: assertion,
    scope,
  }));
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.scope, scope);
  return body.access_token;
}

before(async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair("ES384", { extractable: true });
  key = { kid: "bulk-1", privateKey, publicJwk: { ...(await jose.exportJWK(publicKey)), kid: "bulk-1", alg: "ES384" } };
  w = await startWorker();
  const backend = (client_id) => ({ client_id, client_name: client_id, client_type: "backend", scope: "system/*.rs system/Observation.rs?category=laboratory", jwks: { keys: [key.publicJwk] } });
  await seed(w, { clients: [USER_APP, backend("bulk-backend"), backend("other-backend")] });
  tokens.all = await backendToken("bulk-backend", "system/*.rs");
  tokens.other = await backendToken("other-backend", "system/*.rs");
  tokens.obs = await backendToken("bulk-backend", "system/Observation.rs");
  tokens.lab = await backendToken("bulk-backend", "system/Observation.rs?category=laboratory");
  const user = await authorize(w, { client_id: USER_APP.client_id, scope: "openid fhirUser user/*.rs" });
  tokens.user = (await exchange(w, user.code, user.verifier, { client_id: USER_APP.client_id })).body.access_token;
  const patient = await authorize(w, { client_id: USER_APP.client_id, scope: "launch/patient patient/*.rs" });
  tokens.patient = (await exchange(w, patient.code, patient.verifier, { client_id: USER_APP.client_id })).body.access_token;
});
after(() => w?.dispose());

const auth = (token) => (token ? { Authorization: `Bearer ${token}` } : {});

/** The kick-off: `path` below /fhir (query included). */
async function kickOff(path, { as = tokens.all, method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: FHIR_JSON, Prefer: "respond-async", ...auth(as), ...headers } };
  if (body) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = FHIR_JSON;
  }
  return w.fetch(`/fhir${path}`, init);
}

async function started(path, options) {
  const res = await kickOff(path, options);
  assert.equal(res.status, 202, await res.clone().text());
  const location = res.headers.get("content-location");
  assert.equal(res.headers.get("cache-control"), "no-store");
  const accepted = await res.json();
  assert.equal(accepted.resourceType, "OperationOutcome");
  assert.equal(accepted.issue[0].severity, "information");
  assert.match(location, new RegExp(`^${w.url}/fhir/bulk/[A-Za-z0-9-]+$`));
  return location;
}

/** Polls the status URL to the manifest; every 202 carries X-Progress and Retry-After. */
let inProgress = 0;
async function manifestOf(location, as = tokens.all) {
  for (let i = 0; i < 300; i++) {
    const res = await fetch(location, { headers: auth(as) });
    if (res.status === 200) {
      assert.match(res.headers.get("content-type"), /^application\/json/);
      assert.equal(res.headers.get("cache-control"), "no-store");
      return res.json();
    }
    assert.equal(res.status, 202, await res.text());
    assert.match(res.headers.get("x-progress"), /^\d+% \(\d+ of \d+ partitions, \d+ resources\)$/);
    assert.equal(res.headers.get("retry-after"), "1");
    inProgress++;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the export did not finish");
}

/** Downloads every output file: resources by type, each file's count checked. */
async function download(manifest, as = tokens.all) {
  const byType = {};
  for (const output of manifest.output) {
    const res = await fetch(output.url, { headers: { ...auth(as), Accept: "application/fhir+ndjson" } });
    assert.equal(res.status, 200, output.url);
    assert.equal(res.headers.get("content-type"), "application/fhir+ndjson");
    const text = await res.text();
    assert.ok(text.endsWith("\n"));
    const lines = text.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, output.count, output.url);
    for (const r of lines) {
      assert.equal(r.resourceType, output.type, "one type per file");
      (byType[r.resourceType] ??= []).push(r);
    }
  }
  return byType;
}

const ids = (byType) => Object.fromEntries(Object.entries(byType).map(([t, rs]) => [t, rs.map((r) => r.id).sort()]));
const only = (...types) => Object.fromEntries(types.map((t) => [t, fixtures[t]]));

function outcome(body, code) {
  assert.equal(body.resourceType, "OperationOutcome");
  assert.equal(body.issue[0].code, code, JSON.stringify(body));
}

test("a system-level export: 202 + Content-Location, progress, the manifest, every type's NDJSON exactly, valid R4", async () => {
  const kickOffUrl = `${w.url}/fhir/$export`;
  const location = await started("/$export");
  const manifest = await manifestOf(location);
  assert.ok(inProgress > 0, "the status said 202 (in progress) at least once: every served type's shared partition is asked, 50 calls a batch");
  assert.match(manifest.transactionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(manifest.request, kickOffUrl);
  assert.equal(manifest.requiresAccessToken, true);
  assert.deepEqual(manifest.error, []);
  const byType = await download(manifest);
  assert.deepEqual(ids(byType), fixtures, "every resource of every type, once");
  // Every exported resource, validated by an independent R4 implementation.
  const dir = tempDir("bulk-ndjson-");
  let n = 0;
  for (const resources of Object.values(byType)) for (const r of resources) writeFileSync(join(dir, `${n++}.json`), JSON.stringify(r));
  const output = execFileSync(join(ROOT, ".venv", "bin", "python"), [join(ROOT, "tests", "python", "validate_r4.py"), dir], { encoding: "utf8" });
  assert.match(output, new RegExp(`validated ${n} FHIR response bodies, 0 invalid`));
});

test("_type, _typeFilter and _since (GET), and a Patient-level POST with a Parameters body", async () => {
  const typeFilter = encodeURIComponent(`Observation?category=${encodeURIComponent("http://terminology.hl7.org/CodeSystem/observation-category|laboratory")}`);
  const filtered = await download(await manifestOf(await started(`/$export?_type=Observation,Patient&_typeFilter=${typeFilter}&_outputFormat=ndjson`)));
  assert.deepEqual(Object.keys(filtered).sort(), ["Observation", "Patient"]);
  assert.deepEqual(ids(filtered).Patient, fixtures.Patient);
  assert.ok(filtered.Observation.length > 0 && filtered.Observation.length < fixtures.Observation.length);
  for (const o of filtered.Observation) assert.ok(o.category.some((c) => c.coding.some((x) => x.code === "laboratory")), o.id);

  const future = await manifestOf(await started(`/$export?_since=${encodeURIComponent("2999-01-01T00:00:00Z")}`));
  assert.deepEqual(future.output, [], "nothing changed after _since");
  const past = await download(await manifestOf(await started(`/$export?_type=Patient&_since=${encodeURIComponent("2000-01-01T00:00:00Z")}`)));
  assert.deepEqual(ids(past), only("Patient"));

  const parameters = { resourceType: "Parameters", parameter: [{ name: "_type", valueString: "Patient,Condition" }, { name: "_outputFormat", valueString: "application/fhir+ndjson" }] };
  const patients = await download(await manifestOf(await started("/Patient/$export", { method: "POST", body: parameters })));
  assert.deepEqual(ids(patients), only("Condition", "Patient"));
  const compartments = await download(await manifestOf(await started("/Patient/$export")));
  assert.equal(compartments.Practitioner, undefined, "a patient-level export holds the compartments only");
  assert.equal(compartments.Organization, undefined);
  assert.deepEqual(ids(compartments).Observation, fixtures.Observation);
});

test("scopes decide: types the token reads, granular filters, 403 for a type it cannot read (or an error file under handling=lenient)", async () => {
  const obs = await download(await manifestOf(await started("/$export", { as: tokens.obs }), tokens.obs), tokens.obs);
  assert.deepEqual(ids(obs), only("Observation"));
  const lab = await download(await manifestOf(await started("/$export", { as: tokens.lab }), tokens.lab), tokens.lab);
  assert.ok(lab.Observation.length > 0 && lab.Observation.length < fixtures.Observation.length);
  for (const o of lab.Observation) assert.ok(o.category.some((c) => c.coding.some((x) => x.code === "laboratory")), o.id);

  const refused = await kickOff("/$export?_type=Patient", { as: tokens.obs });
  assert.equal(refused.status, 403);
  outcome(await refused.json(), "security");
  const lenient = await manifestOf(await started("/$export?_type=Patient,Observation", { as: tokens.obs, headers: { Prefer: "respond-async, handling=lenient" } }), tokens.obs);
  assert.deepEqual(lenient.output.map((o) => o.type), ["Observation"]);
  assert.equal(lenient.error.length, 1);
  assert.equal(lenient.error[0].type, "OperationOutcome");
  const errors = await fetch(lenient.error[0].url, { headers: auth(tokens.obs) });
  assert.equal(errors.status, 200);
  assert.equal(errors.headers.get("content-type"), "application/fhir+ndjson");
  const problem = JSON.parse((await errors.text()).trim());
  assert.equal(problem.resourceType, "OperationOutcome");
  assert.match(problem.issue[0].diagnostics, /Patient/);
});

test("user and patient tokens, no token, and malformed kick-offs are refused with an OperationOutcome", async () => {
  for (const as of [tokens.user, tokens.patient]) {
    const res = await kickOff("/$export", { as });
    assert.equal(res.status, 403);
    outcome(await res.json(), "security");
  }
  const none = await kickOff("/$export", { as: null });
  assert.equal(none.status, 401);
  assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="smart-edge"');
  const cases = [
    ["/$export", { headers: { Prefer: "" } }, 400, "invalid"],
    ["/$export?_outputFormat=text/csv", {}, 400, "not-supported"],
    ["/$export?_type=Spaceship", {}, 400, "not-supported"],
    ["/$export?_since=yesterday", {}, 400, "invalid"],
    ["/$export?_elements=id", {}, 400, "not-supported"],
    ["/Patient/$export?_type=Practitioner", {}, 400, "invalid"],
    [`/$export?_typeFilter=${encodeURIComponent("Observation?nonsense=1")}`, {}, 400, "invalid"],
    ["/$export", { headers: { Accept: "application/fhir+xml" } }, 406, "not-supported"],
    ["/Group/no-such-group/$export", {}, 404, "not-found"],
    ["/$export", { method: "POST", body: { resourceType: "Patient" } }, 400, "invalid"],
  ];
  for (const [path, options, status, code] of cases) {
    const res = await kickOff(path, options);
    assert.equal(res.status, status, `${path} ${JSON.stringify(options)}`);
    assert.match(res.headers.get("content-type"), /^application\/fhir\+json/);
    outcome(await res.json(), code);
  }
  const put = await w.fetch("/fhir/$export", { method: "PUT", headers: auth(tokens.all) });
  assert.equal(put.status, 405);
});

test("the status and the files are the exporting client's only; DELETE cancels", async () => {
  const location = await started("/$export?_type=Patient");
  const manifest = await manifestOf(location);
  const file = manifest.output[0].url;
  for (const url of [location, file]) {
    const other = await fetch(url, { headers: auth(tokens.other) });
    assert.equal(other.status, 404, `another client: ${url}`);
    outcome(await other.json(), "not-found");
    const anonymous = await fetch(url);
    assert.equal(anonymous.status, 401, `no token: ${url}`);
  }
  assert.equal((await fetch(`${location}/Patient-99.ndjson`, { headers: auth(tokens.all) })).status, 404);
  const notMine = await fetch(location, { method: "DELETE", headers: auth(tokens.other) });
  assert.equal(notMine.status, 404);
  const cancelled = await fetch(location, { method: "DELETE", headers: auth(tokens.all) });
  assert.equal(cancelled.status, 202);
  assert.equal((await cancelled.json()).issue[0].severity, "information");
  assert.equal((await fetch(location, { headers: auth(tokens.all) })).status, 404, "gone after DELETE");
  assert.equal((await fetch(file, { headers: auth(tokens.all) })).status, 404, "its files too");
  // A running export can be cancelled as well.
  const running = await started("/$export");
  assert.equal((await fetch(running, { method: "DELETE", headers: auth(tokens.all) })).status, 202);
  assert.equal((await fetch(running, { headers: auth(tokens.all) })).status, 404);
  assert.equal((await fetch(`${w.url}/fhir/bulk/${randomUUID()}`, { headers: auth(tokens.all) })).status, 404, "an unknown job");
});

test("an export runs in the background: the FHIR API answers while it runs", async () => {
  const location = await started("/$export");
  const read = await w.fetch(`/fhir/Patient/${NED}`, { headers: auth(tokens.all) });
  assert.equal(read.status, 200);
  const search = await w.fetch(`/fhir/Observation?patient=${BUSTER}&_count=1`, { headers: auth(tokens.all) });
  assert.equal(search.status, 200);
  const manifest = await manifestOf(location);
  assert.ok(manifest.output.length > 0);
});

test("a Group-level export holds its member patients' compartments only", async () => {
  const group = { resourceType: "Group", id: "bulk-cohort", type: "person", actual: true, member: [{ entity: { reference: `Patient/${NED}` } }, { entity: { reference: `Patient/${BUSTER}` } }, { entity: { reference: "Patient/not-loaded" }, inactive: true }] };
  const bundle = { resourceType: "Bundle", type: "transaction", entry: [{ resource: group, request: { method: "PUT", url: "Group/bulk-cohort" } }] };
  const loaded = await w.fetch("/admin/fhir/bundle", { method: "POST", headers: { ...adminHeaders(), "Content-Type": FHIR_JSON }, body: JSON.stringify(bundle) });
  assert.equal(loaded.status, 200, await loaded.text());
  const exported = ids(await download(await manifestOf(await started("/Group/bulk-cohort/$export"))));
  const expected = {};
  for (const patient of [NED, BUSTER]) for (const [t, list] of Object.entries(byPatient[patient])) (expected[t] ??= []).push(...list);
  for (const list of Object.values(expected)) list.sort();
  assert.deepEqual(exported, expected);
  const patients = ids(await download(await manifestOf(await started("/Group/bulk-cohort/$export?_type=Patient"))));
  assert.deepEqual(patients, { Patient: [NED, BUSTER].sort() });
  // Reading the Group takes a scope on Group: an Observation-only token gets 403.
  const refused = await kickOff("/Group/bulk-cohort/$export", { as: tokens.obs });
  assert.equal(refused.status, 403);
  outcome(await refused.json(), "security");
});

test("the CapabilityStatement instantiates the Bulk Data one and names its three operations", async () => {
  const { res, body } = await w.json("/fhir/metadata");
  assert.equal(res.status, 200);
  assert.deepEqual(body.instantiates, ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]);
  assert.deepEqual(body.rest[0].operation.map((o) => [o.name, o.definition]), [
    ["export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"],
    ["patient-export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"],
    ["group-export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"],
  ]);
});

test("a _typeFilter narrows what the token's granular scope allows and never widens it", async () => {
  const typeFilter = (query) => `_typeFilter=${encodeURIComponent(query)}`;
  const lab = (query) => started(`/$export?_type=Observation&${typeFilter(query)}`, { as: tokens.lab });
  // The filter asks for vital signs; the token reads laboratory results only: nothing.
  const vital = await manifestOf(await lab("Observation?category=vital-signs"), tokens.lab);
  assert.deepEqual(vital.output, []);
  assert.deepEqual(vital.error, []);
  // Two codes, one laboratory and one vital sign: the laboratory one only; the same filter
  // with system/*.rs gets both.
  // (A comma inside a filter's query is encoded there: the bare ones separate filters.)
  const codes = `Observation?code=${encodeURIComponent("http://loinc.org|718-7,http://loinc.org|8302-2")}`;
  const both = [...observations.code["718-7"], ...observations.code["8302-2"]].sort();
  const narrowed = ids(await download(await manifestOf(await lab(codes), tokens.lab), tokens.lab));
  assert.deepEqual(narrowed, { Observation: [...observations.code["718-7"]].sort() });
  const all = ids(await download(await manifestOf(await started(`/$export?_type=Observation&${typeFilter(codes)}`))));
  assert.deepEqual(all, { Observation: both });
  // Several filters are alternatives, each still within the scope.
  const either = ids(await download(await manifestOf(await lab(`Observation?code=${encodeURIComponent("http://loinc.org|718-7")},Observation?category=survey`), tokens.lab), tokens.lab));
  assert.deepEqual(either, { Observation: [...observations.code["718-7"]].sort() });
  // A filter on a type the token cannot read does not add that type.
  for (const path of [`/$export?${typeFilter("Patient?gender=male")}`, `/$export?_type=Observation&${typeFilter("Patient?gender=male")}`]) {
    const res = await kickOff(path, { as: tokens.lab });
    assert.equal(res.status, 400, path);
    outcome(await res.json(), "invalid");
  }
  const patient = await kickOff(`/$export?_type=Patient&${typeFilter("Patient?gender=male")}`, { as: tokens.lab });
  assert.equal(patient.status, 403);
  outcome(await patient.json(), "security");
});

// Last: it adds resources the exact-id tests above do not expect.
test("the types Synthea added (generated bundles) export exactly, and their NDJSON is valid R4 (fhir.resources)", async () => {
  const ADDED = ["CareTeam", "Device", "DocumentReference", "ImagingStudy", "Medication", "MedicationAdministration", "Provenance", "SupplyDelivery"];
  const expected = {};
  for (const bundle of [hospitalBundle(), practitionerBundle(), patientBundle(1), patientBundle(2)]) {
    const loaded = await w.fetch("/admin/fhir/bundle", { method: "POST", headers: { ...adminHeaders(), "Content-Type": FHIR_JSON }, body: JSON.stringify(bundle) });
    const body = await loaded.json();
    assert.equal(loaded.status, 200, JSON.stringify(body));
    assert.equal(body.stored, bundle.entry.length);
    // New to this server, each resource keeps its urn:uuid as its id (tests/transactions.test.mjs).
    for (const { resource } of bundle.entry) if (ADDED.includes(resource.resourceType)) (expected[resource.resourceType] ??= []).push(resource.id);
  }
  for (const list of Object.values(expected)) list.sort();
  assert.deepEqual(Object.keys(expected).sort(), ADDED);
  assert.ok(Object.values(expected).every((list) => list.length === 2));
  const byType = await download(await manifestOf(await started(`/$export?_type=${ADDED.join(",")}`)));
  assert.deepEqual(ids(byType), expected);
  // The patient-level export holds the compartment types among them (Medication is shared).
  const compartments = ids(await download(await manifestOf(await started(`/Patient/$export?_type=${ADDED.filter((t) => t !== "Medication").join(",")}`))));
  assert.deepEqual(compartments, Object.fromEntries(Object.entries(expected).filter(([t]) => t !== "Medication")));
  const dir = tempDir("bulk-added-");
  let n = 0;
  for (const resources of Object.values(byType)) for (const r of resources) writeFileSync(join(dir, `${n++}.json`), JSON.stringify(r));
  const output = execFileSync(join(ROOT, ".venv", "bin", "python"), [join(ROOT, "tests", "python", "validate_r4.py"), dir], { encoding: "utf8" });
  assert.match(output, new RegExp(`validated ${n} FHIR response bodies, 0 invalid`));
  assert.equal(n, 16);
});
