// Validation on the way in (issue 12): every create, update and bundle entry is checked against
// its R4 StructureDefinition; a refusal is a 400 OperationOutcome with one issue per problem
// (code structure / required / value, the FHIRPath in `expression`) and nothing is written.
// The verdicts are cross-checked with an independent implementation (tests/python/validate_r4.py,
// the fhir.resources package).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { ROOT, tempDir, startWorker } from "./helpers/worker.mjs";
import { seed, NED, APP } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";

let w;
let token;
const CLIENT = { ...APP, client_id: "validation-app", scope: "launch launch/patient openid fhirUser patient/*.cruds", consent: "pre-approved" };

before(async () => {
  w = await startWorker();
  await seed(w, { clients: [CLIENT] });
  const { code, verifier } = await authorize(w, { client_id: CLIENT.client_id, scope: "launch/patient patient/*.cruds" });
  token = (await exchange(w, code, verifier, { client_id: CLIENT.client_id })).body.access_token;
  assert.ok(token);
});
after(() => w.dispose());

async function fhir(path, { method = "GET", body } = {}) {
  const res = await w.fetch(`/fhir${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/fhir+json" } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** `[code, expression]` of each issue of an OperationOutcome. */
const issues = (outcome) => outcome.issue.map((i) => [i.code, ...i.expression]);
const subject = { reference: `Patient/${NED}` };
const identified = (value) => ({ identifier: [{ system: "urn:test:validation", value }] });
const found = async (value) => (await fhir(`/Observation?identifier=urn:test:validation|${value}`)).body.total;

// Bodies refused, with the issues expected, and the same bodies corrected, accepted.
const REFUSED = [
  [
    "missing required elements, a list sent as one value",
    { resourceType: "Observation", ...identified("v-1"), subject, category: { text: "vital-signs" } },
    [["structure", "Observation.category"], ["required", "Observation.code"], ["required", "Observation.status"]],
  ],
  [
    "several values for 0..1, the wrong JSON type, a date that is not one",
    { resourceType: "Observation", ...identified("v-2"), subject, status: ["final"], code: { text: "x" }, valueQuantity: { value: "7" }, effectiveDateTime: "2024-02-30" },
    [["value", "Observation.effective"], ["structure", "Observation.status"], ["value", "Observation.value.value"]],
  ],
  [
    "a choice of the wrong type, an unknown element",
    { resourceType: "Observation", ...identified("v-3"), subject, status: "final", code: { text: "x" }, valueReference: subject, colour: "red" },
    [["structure", "Observation.colour"], ["structure", "Observation.valueReference"]],
  ],
  [
    "a problem deep in a BackboneElement and a datatype",
    { resourceType: "Observation", ...identified("v-4"), subject, status: "final", code: { text: "x" }, component: [{ code: { coding: [{ system: 5, code: "8480-6" }] }, valueString: "ok" }, { valueString: "b" }] },
    [["value", "Observation.component[0].code.coding[0].system"], ["required", "Observation.component[1].code"]],
  ],
];
const ACCEPTED = { resourceType: "Observation", ...identified("v-ok"), subject, status: "final", code: { text: "x" }, valueQuantity: { value: 7, unit: "kg" }, effectiveDateTime: "2024-02-29", _status: { extension: [{ url: "http://example.org/why", valueString: "checked" }] } };

test("a create that fails the R4 definition is 400 with one issue per problem, and writes nothing", async () => {
  for (const [what, body, expected] of REFUSED) {
    const res = await fhir("/Observation", { method: "POST", body });
    assert.equal(res.status, 400, what);
    assert.equal(res.body.resourceType, "OperationOutcome", what);
    assert.deepEqual(issues(res.body), expected, what);
    assert.ok(res.body.issue.every((i) => i.severity === "error" && i.diagnostics.startsWith(i.expression[0])), what);
    assert.equal(await found(body.identifier[0].value), 0, what);
  }
  const created = await fhir("/Observation", { method: "POST", body: ACCEPTED });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(await found("v-ok"), 1);
});

test("an update that fails the R4 definition is 400 and leaves the resource as it was", async () => {
  const before = await fhir(`/Patient/${NED}`);
  assert.equal(before.status, 200);
  const broken = { ...before.body, contact: [{ name: { given: ["Jo", 7] } }], gender: ["male"] };
  const res = await fhir(`/Patient/${NED}`, { method: "PUT", body: broken });
  assert.equal(res.status, 400);
  assert.deepEqual(issues(res.body), [["value", "Patient.contact[0].name.given[1]"], ["structure", "Patient.gender"]]);
  const after = await fhir(`/Patient/${NED}`);
  assert.equal(after.body.meta.versionId, before.body.meta.versionId);
  assert.equal(after.body.contact, before.body.contact);
});

test("a PATCH whose result fails the R4 definition is 422 with the issues, and changes nothing", async () => {
  const created = await fhir("/Observation", { method: "POST", body: { ...ACCEPTED, ...identified("p-1") } });
  assert.equal(created.status, 201);
  const id = created.body.id;
  const res = await w.fetch(`/fhir/Observation/${id}`, {
    method: "PATCH",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json-patch+json" },
    body: JSON.stringify([{ op: "replace", path: "/status", value: ["final"] }, { op: "remove", path: "/code" }]),
  });
  assert.equal(res.status, 422);
  const outcome = await res.json();
  assert.deepEqual(issues(outcome), [["structure", "Observation.status"], ["required", "Observation.code"]]);
  assert.equal(outcome.issue[1].diagnostics, "the patched resource is not valid: Observation.code is required (1..1)");
  const after = await fhir(`/Observation/${id}`);
  assert.equal(after.body.meta.versionId, "1");
  assert.equal(after.body.status, "final");
});

test("a transaction with one entry that fails is refused whole; a batch refuses that entry alone", async () => {
  const entry = (resource) => ({ resource, request: { method: "POST", url: resource.resourceType } });
  const good = { ...ACCEPTED, ...identified("t-ok") };
  const bad = { resourceType: "Observation", ...identified("t-bad"), subject, code: { text: "x" } };
  const transaction = await fhir("", { method: "POST", body: { resourceType: "Bundle", type: "transaction", entry: [entry(good), entry(bad)] } });
  assert.equal(transaction.status, 400);
  assert.deepEqual(issues(transaction.body), [["required", "Observation.status"]]);
  assert.equal(transaction.body.issue[0].diagnostics, "entry 1: Observation.status is required (1..1)");
  assert.equal(await found("t-ok"), 0, "nothing written");

  const batch = await fhir("", { method: "POST", body: { resourceType: "Bundle", type: "batch", entry: [entry(good), entry(bad)] } });
  assert.equal(batch.status, 200);
  assert.deepEqual(batch.body.entry.map((e) => e.response.status), ["201 Created", "400"]);
  assert.deepEqual(issues(batch.body.entry[1].response.outcome), [["required", "Observation.status"]]);
  assert.equal(await found("t-ok"), 1);
  assert.equal(await found("t-bad"), 0);
});

test("the independent R4 validator (fhir.resources) agrees: each refused body is invalid, the accepted one valid", () => {
  const dir = tempDir("validation-bodies-");
  REFUSED.forEach(([, body], i) => writeFileSync(join(dir, `refused-${i}.json`), JSON.stringify(body)));
  writeFileSync(join(dir, "accepted.json"), JSON.stringify(ACCEPTED));
  const python = join(ROOT, ".venv", "bin", "python");
  let output = "";
  try {
    output = execFileSync(python, [join(ROOT, "tests", "python", "validate_r4.py"), dir], { encoding: "utf8", stdio: "pipe" });
  } catch (e) {
    output = e.stdout;
  }
  const invalid = [...output.matchAll(/^INVALID (\S+):/gm)].map((m) => m[1]).sort();
  assert.deepEqual(invalid, REFUSED.map((_, i) => `refused-${i}.json`), output);
});
