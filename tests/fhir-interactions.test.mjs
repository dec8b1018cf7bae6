// The FHIR R4 interactions of http.html beyond read/search/create/update/delete, on workerd:
// PATCH with JSON Patch (RFC 6902), conditional read (If-None-Match / If-Modified-Since → 304),
// history paging, Prefer: return=OperationOutcome, _format / XML → 406 / 415, and
// Patient/$everything within the caller's scopes. A small data set of its own (below), so every
// assertion names exact ids.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { startWorker, adminHeaders, tempDir, ROOT } from "./helpers/worker.mjs";
import { APP, PRACTITIONER } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";

const CLIENT = { ...APP, client_id: "interactions-app", scope: "launch launch/patient openid fhirUser patient/*.cruds user/*.cruds", consent: "pre-approved" };
const CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category";
const A = "ix-a";
const B = "ix-b";

const patient = (id, family) => ({ resourceType: "Patient", id, name: [{ family, given: ["Test"] }], gender: "female", birthDate: "1980-02-03" });
const obs = (id, subject, category) => ({
  resourceType: "Observation", id, status: "final", subject: { reference: `Patient/${subject}` },
  category: [{ coding: [{ system: CATEGORY, code: category }] }], code: { coding: [{ system: "http://loinc.org", code: "2339-0" }] },
});
const DATA = [
  patient(A, "Alpha"),
  patient(B, "Beta"),
  { resourceType: "Practitioner", id: "ix-doc", name: [{ family: "Doc" }] },
  obs("ix-a-lab", A, "laboratory"),
  obs("ix-a-vital", A, "vital-signs"),
  { resourceType: "Condition", id: "ix-a-cond", subject: { reference: `Patient/${A}` }, code: { text: "a condition" } },
  { resourceType: "Encounter", id: "ix-a-enc", status: "finished", class: { system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: "AMB" }, subject: { reference: `Patient/${A}` } },
  obs("ix-b-lab", B, "laboratory"),
];

let w;
const tokens = {};
// Every FHIR body of this file is validated against R4 at the end (tests/python/validate_r4.py).
const captured = tempDir("fhir-interactions-bodies-");
let captures = 0;

async function admin(path, body) {
  const res = await w.fetch(path, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  assert.ok(res.ok, `${path}: ${res.status} ${await res.text()}`);
}

async function token(scope, patientId = A) {
  const { code, verifier } = await authorize(w, { client_id: CLIENT.client_id, scope, patient: patientId });
  const body = (await exchange(w, code, verifier, { client_id: CLIENT.client_id })).body;
  assert.ok(body.access_token, JSON.stringify(body));
  return body.access_token;
}

async function fhir(path, { as = "ned", method = "GET", body, headers = {}, contentType = "application/fhir+json" } = {}) {
  const res = await w.fetch(`/fhir${path}`, {
    method,
    headers: { ...(as ? { Authorization: `Bearer ${tokens[as]}` } : {}), ...(body !== undefined ? { "Content-Type": contentType } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed = text ? JSON.parse(text) : null;
  if (parsed?.resourceType) writeFileSync(join(captured, `${String(++captures).padStart(4, "0")}.json`), text);
  return { res, body: parsed, text };
}

const patch = (path, ops, { as = "ned", headers = {} } = {}) => fhir(path, { as, method: "PATCH", body: ops, headers, contentType: "application/json-patch+json" });
const refs = (bundle) => bundle.entry.map((e) => `${e.resource.resourceType}/${e.resource.id}`);
const link = (bundle, relation) => bundle.link.find((l) => l.relation === relation)?.url;
const local = (url) => { const u = new URL(url); return u.pathname.replace(/^\/fhir/, "") + u.search; };

function assertOutcome(r, status, code) {
  assert.equal(r.res.status, status, r.text);
  assert.match(r.res.headers.get("content-type"), /^application\/fhir\+json/);
  assert.equal(r.body.resourceType, "OperationOutcome");
  assert.equal(r.body.issue[0].code, code, r.text);
}

before(async () => {
  w = await startWorker();
  await admin("/admin/clients", CLIENT);
  await admin("/admin/users", PRACTITIONER);
  await admin("/admin/fhir/bundle", { resourceType: "Bundle", type: "transaction", entry: DATA.map((r) => ({ resource: r, request: { method: "PUT", url: `${r.resourceType}/${r.id}` } })) });
  tokens.ned = await token("launch/patient patient/*.cruds");
  tokens.reader = await token("launch/patient patient/*.rs");
  tokens.obsOnly = await token("launch/patient patient/Observation.rs");
  tokens.lab = await token("launch/patient patient/Observation.rus?category=laboratory patient/Patient.r");
  tokens.practitioner = await token("openid fhirUser user/*.cruds");
});
after(() => w?.dispose());

describe("PATCH with JSON Patch", () => {
  test("a patch is applied to the current version and answered as an update: 200, ETag, Location, the resource", async () => {
    const r = await patch(`/Observation/ix-a-lab`, [{ op: "test", path: "/status", value: "final" }, { op: "replace", path: "/status", value: "amended" }, { op: "add", path: "/valueString", value: "patched" }], { headers: { "If-Match": 'W/"1"' } });
    assert.equal(r.res.status, 200, r.text);
    assert.equal(r.res.headers.get("etag"), 'W/"2"');
    assert.match(r.res.headers.get("location"), /\/fhir\/Observation\/ix-a-lab\/_history\/2$/);
    assert.match(r.res.headers.get("content-type"), /^application\/fhir\+json/);
    assert.equal(r.body.id, "ix-a-lab");
    assert.equal(r.body.status, "amended");
    assert.equal(r.body.valueString, "patched");
    assert.equal(r.body.meta.versionId, "2");
    const read = await fhir(`/Observation/ix-a-lab`);
    assert.deepEqual(read.body, r.body);
  });

  test("stale If-Match 412, a failing test op 422, type or id patched away 422, a move to another patient 422, not a JSON Patch 415/400", async () => {
    assertOutcome(await patch(`/Observation/ix-a-lab`, [{ op: "replace", path: "/status", value: "final" }], { headers: { "If-Match": 'W/"1"' } }), 412, "invalid");
    assertOutcome(await patch(`/Observation/ix-a-lab`, [{ op: "test", path: "/status", value: "cancelled" }]), 422, "invalid");
    assertOutcome(await patch(`/Observation/ix-a-lab`, [{ op: "replace", path: "/id", value: "other" }]), 422, "invalid");
    assertOutcome(await patch(`/Observation/ix-a-lab`, [{ op: "replace", path: "/resourceType", value: "Condition" }]), 422, "invalid");
    assertOutcome(await patch(`/Observation/ix-a-lab`, [{ op: "replace", path: "/subject/reference", value: `Patient/${B}` }]), 422, "invalid");
    assertOutcome(await fhir(`/Observation/ix-a-lab`, { method: "PATCH", body: { resourceType: "Parameters" } }), 415, "not-supported");
    assertOutcome(await patch(`/Observation/ix-a-lab`, "{not json"), 400, "invalid");
    assertOutcome(await patch(`/Observation/ix-missing`, [{ op: "replace", path: "/status", value: "final" }]), 404, "not-found");
    assert.equal((await fhir(`/Observation/ix-a-lab`)).res.headers.get("etag"), 'W/"2"', "nothing refused was written");
  });

  test("the gate: update rights (403 insufficient_scope), the launch patient only, the granular filter before and after", async () => {
    const ro = await patch(`/Observation/ix-a-vital`, [{ op: "replace", path: "/status", value: "amended" }], { as: "reader" });
    assertOutcome(ro, 403, "security");
    assert.match(ro.res.headers.get("www-authenticate"), /insufficient_scope/);
    assertOutcome(await patch(`/Observation/ix-b-lab`, [{ op: "replace", path: "/status", value: "amended" }]), 404, "not-found");
    assertOutcome(await patch(`/Observation/ix-a-vital`, [{ op: "replace", path: "/status", value: "amended" }], { as: "lab" }), 404, "not-found");
    assertOutcome(await patch(`/Observation/ix-a-lab`, [{ op: "replace", path: "/category/0/coding/0/code", value: "vital-signs" }], { as: "lab" }), 403, "security");
    assert.equal((await fhir(`/Observation/ix-b-lab`, { as: "practitioner" })).body.status, "final");
    assert.equal((await fhir(`/Observation/ix-a-vital`)).body.status, "final");
  });
});

describe("conditional read", () => {
  test("If-None-Match with the current ETag is 304 without a body, with the ETag; another version is 200", async () => {
    const read = await fhir(`/Condition/ix-a-cond`);
    assert.equal(read.res.status, 200);
    const etag = read.res.headers.get("etag");
    assert.equal(etag, 'W/"1"');
    const held = await fhir(`/Condition/ix-a-cond`, { headers: { "If-None-Match": etag } });
    assert.equal(held.res.status, 304);
    assert.equal(held.text, "");
    assert.equal(held.res.headers.get("etag"), etag);
    assert.equal(held.res.headers.get("last-modified"), read.res.headers.get("last-modified"));
    assert.equal((await fhir(`/Condition/ix-a-cond`, { headers: { "If-None-Match": 'W/"9"' } })).res.status, 200);
    assert.equal((await fhir(`/Condition/ix-a-cond/_history/1`, { headers: { "If-None-Match": etag } })).res.status, 304, "vread too");
    assert.equal((await fhir(`/Observation/ix-b-lab`, { headers: { "If-None-Match": "*" } })).res.status, 404, "never a 304 for what a read hides");
  });

  test("If-Modified-Since: 304 when not modified since, 200 when it was", async () => {
    const read = await fhir(`/Condition/ix-a-cond`);
    const modified = read.res.headers.get("last-modified");
    assert.ok(modified);
    const same = await fhir(`/Condition/ix-a-cond`, { headers: { "If-Modified-Since": modified } });
    assert.equal(same.res.status, 304);
    assert.equal(same.text, "");
    assert.equal(same.res.headers.get("etag"), 'W/"1"');
    const earlier = new Date(Date.parse(modified) - 60_000).toUTCString();
    const changed = await fhir(`/Condition/ix-a-cond`, { headers: { "If-Modified-Since": earlier } });
    assert.equal(changed.res.status, 200);
    assert.equal(changed.body.id, "ix-a-cond");
  });
});

describe("history paging", () => {
  test("instance history pages with _count and next/previous links; _since narrows it", async () => {
    const id = "ix-history";
    const created = await fhir(`/Observation/${id}`, { method: "PUT", body: { ...obs(id, A, "survey"), id } });
    assert.equal(created.res.status, 201);
    const between = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    for (const status of ["amended", "corrected", "final", "amended"]) {
      assert.equal((await patch(`/Observation/${id}`, [{ op: "replace", path: "/status", value: status }])).res.status, 200);
    }
    const first = await fhir(`/Observation/${id}/_history?_count=2`);
    assert.equal(first.res.status, 200);
    assert.equal(first.body.type, "history");
    assert.equal(first.body.total, 5);
    assert.deepEqual(first.body.entry.map((e) => e.resource.meta.versionId), ["5", "4"]);
    assert.equal(first.body.entry[0].fullUrl, `${w.url}/fhir/Observation/${id}/_history/5`);
    assert.equal(link(first.body, "previous"), undefined);
    assert.equal(local(link(first.body, "next")), `/Observation/${id}/_history?_count=2&_offset=2`);
    const second = await fhir(local(link(first.body, "next")));
    assert.deepEqual(second.body.entry.map((e) => e.resource.meta.versionId), ["3", "2"]);
    assert.equal(local(link(second.body, "previous")), `/Observation/${id}/_history?_count=2&_offset=0`);
    const last = await fhir(local(link(second.body, "next")));
    assert.deepEqual(last.body.entry.map((e) => e.resource.meta.versionId), ["1"]);
    assert.equal(link(last.body, "next"), undefined);
    const since = await fhir(`/Observation/${id}/_history?_since=${encodeURIComponent(between)}`);
    assert.equal(since.body.total, 4);
    assert.deepEqual(since.body.entry.map((e) => e.resource.meta.versionId), ["5", "4", "3", "2"]);
    assertOutcome(await fhir(`/Observation/${id}/_history?_since=yesterday`), 400, "invalid");
  });

  test("type history pages past 100 versions", async () => {
    const id = "ix-many";
    await fhir(`/Condition/${id}`, { method: "PUT", body: { resourceType: "Condition", id, subject: { reference: `Patient/${A}` }, code: { text: "v0" } } });
    for (let i = 1; i < 105; i++) {
      const r = await patch(`/Condition/${id}`, [{ op: "replace", path: "/code/text", value: `v${i}` }]);
      assert.equal(r.res.status, 200);
    }
    const seen = [];
    let page = await fhir(`/Condition/_history?_count=40`);
    assert.equal(page.body.total, 106, "ix-many's 105 versions and ix-a-cond's one");
    for (;;) {
      seen.push(...page.body.entry.map((e) => `${e.resource.id}/${e.resource.meta.versionId}`));
      const next = link(page.body, "next");
      if (!next) break;
      page = await fhir(local(next));
    }
    assert.equal(seen.length, 106);
    assert.equal(new Set(seen).size, 106);
    assert.equal(seen[0], `${id}/105`);
    assert.equal(seen.at(-1), "ix-a-cond/1");
  });
});

describe("Prefer: return=OperationOutcome", () => {
  test("create, update, patch and delete answer an informational OperationOutcome, with the usual headers", async () => {
    const prefer = { Prefer: "return=OperationOutcome" };
    const created = await fhir(`/Observation`, { method: "POST", body: obs("ignored", A, "survey"), headers: prefer });
    assert.equal(created.res.status, 201);
    assert.equal(created.body.resourceType, "OperationOutcome");
    assert.equal(created.body.issue[0].severity, "information");
    assert.equal(created.body.issue[0].code, "informational");
    const location = created.res.headers.get("location");
    const id = location.match(/Observation\/([^/]+)\/_history\/1$/)[1];
    assert.equal(created.body.issue[0].diagnostics, `Observation/${id}/_history/1 created`);
    assert.equal(created.res.headers.get("etag"), 'W/"1"');
    const updated = await fhir(`/Observation/${id}`, { method: "PUT", body: { ...obs(id, A, "survey"), id, status: "amended" }, headers: prefer });
    assert.equal(updated.res.status, 200);
    assert.equal(updated.body.issue[0].diagnostics, `Observation/${id}/_history/2 updated`);
    const patched = await patch(`/Observation/${id}`, [{ op: "replace", path: "/status", value: "final" }], { headers: prefer });
    assert.equal(patched.body.issue[0].diagnostics, `Observation/${id}/_history/3 patched`);
    assert.equal(patched.res.headers.get("etag"), 'W/"3"');
    const deleted = await fhir(`/Observation/${id}`, { method: "DELETE", headers: prefer });
    assert.equal(deleted.res.status, 200);
    assert.equal(deleted.body.issue[0].diagnostics, `Observation/${id} deleted`);
    const minimal = await fhir(`/Observation`, { method: "POST", body: obs("ignored", A, "survey"), headers: { Prefer: "return=minimal" } });
    assert.equal(minimal.res.status, 201);
    assert.equal(minimal.text, "", "return=minimal still answers no body");
  });
});

describe("formats other than JSON", () => {
  test("_format=xml and an Accept of XML only are 406, an XML body 415, each with an OperationOutcome", async () => {
    assertOutcome(await fhir(`/Patient/${A}?_format=xml`), 406, "not-supported");
    assertOutcome(await fhir(`/Patient/${A}?_format=application/fhir%2Bxml`), 406, "not-supported");
    assertOutcome(await fhir(`/Patient/${A}`, { headers: { Accept: "application/fhir+xml" } }), 406, "not-supported");
    assertOutcome(await fhir(`/metadata?_format=xml`, { as: null }), 406, "not-supported");
    const xml = '<Observation xmlns="http://hl7.org/fhir"><status value="final"/></Observation>';
    assertOutcome(await fhir(`/Observation`, { method: "POST", body: xml, contentType: "application/fhir+xml" }), 415, "not-supported");
    assert.equal((await fhir(`/Patient/${A}?_format=json`, { headers: { Accept: "application/fhir+xml" } })).res.status, 200, "_format overrides Accept");
    assert.equal((await fhir(`/Patient/${A}`, { headers: { Accept: "application/fhir+json" } })).res.status, 200);
    assert.equal((await fhir(`/Patient/${A}`, { headers: { Accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" } })).res.status, 200);
  });
});

describe("Patient/$everything", () => {
  test("the patient and their compartment, for a patient/*.rs token; another patient 404", async () => {
    const r = await fhir(`/Patient/${A}/$everything`, { as: "reader" });
    assert.equal(r.res.status, 200, r.text);
    assert.match(r.res.headers.get("content-type"), /^application\/fhir\+json/);
    assert.equal(r.body.type, "searchset");
    const all = refs(r.body);
    assert.equal(all[0], `Patient/${A}`);
    assert.deepEqual(all.filter((x) => x.startsWith("Observation/ix-a-") || !x.startsWith("Observation/")),
      [`Patient/${A}`, "Condition/ix-a-cond", "Condition/ix-many", "Encounter/ix-a-enc", "Observation/ix-a-lab", "Observation/ix-a-vital"]);
    assert.equal(r.body.total, all.length);
    assert.ok(!all.includes("Observation/ix-b-lab") && !all.includes("Practitioner/ix-doc"));
    assert.equal(r.body.entry[0].fullUrl, `${w.url}/fhir/Patient/${A}`);
    assert.equal(r.body.entry[0].search.mode, "match");
    assertOutcome(await fhir(`/Patient/${B}/$everything`, { as: "reader" }), 404, "not-found");
    assertOutcome(await fhir(`/Patient/ix-nobody/$everything`, { as: "practitioner" }), 404, "not-found");
    const encoded = await fhir(`/Patient/${A}/%24everything?_type=Encounter`, { as: "reader" });
    assert.deepEqual(refs(encoded.body), ["Encounter/ix-a-enc"]);
  });

  test("only what the scopes allow: Observation only gets no Patient; a granular scope filters", async () => {
    const obsOnly = await fhir(`/Patient/${A}/$everything?_type=Observation,Patient,Condition`, { as: "obsOnly" });
    assert.equal(obsOnly.res.status, 200);
    const mine = refs(obsOnly.body);
    assert.ok(mine.length > 0 && mine.every((x) => x.startsWith("Observation/")), mine.join());
    assert.ok(mine.includes("Observation/ix-a-vital"));
    const lab = await fhir(`/Patient/${A}/$everything`, { as: "lab" });
    assert.deepEqual(refs(lab.body).filter((x) => x.startsWith("Patient/") || x.startsWith("Observation/ix-a-")), [`Patient/${A}`, "Observation/ix-a-lab"]);
    assert.ok(refs(lab.body).every((x) => !x.startsWith("Condition/") && !x.startsWith("Encounter/")));
    for (const e of lab.body.entry.filter((x) => x.resource.resourceType === "Observation")) {
      assert.equal(e.resource.category[0].coding[0].code, "laboratory");
    }
    const practitioner = await fhir(`/Patient/${B}/$everything`, { as: "practitioner" });
    assert.deepEqual(refs(practitioner.body), [`Patient/${B}`, "Observation/ix-b-lab"]);
  });

  test("paged with _count and next links over exactly the whole compartment; POST with Parameters; one partition", async () => {
    const whole = refs((await fhir(`/Patient/${A}/$everything?_count=500`, { as: "reader" })).body);
    const paged = [];
    let page = await fhir(`/Patient/${A}/$everything?_count=3`, { as: "reader" });
    assert.equal(page.body.total, whole.length);
    assert.equal(local(link(page.body, "next")), `/Patient/${A}/$everything?_count=3&_offset=3`);
    for (;;) {
      assert.ok(page.body.entry.length <= 3);
      paged.push(...refs(page.body));
      const next = link(page.body, "next");
      if (!next) break;
      page = await fhir(local(next), { as: "reader" });
    }
    assert.deepEqual(paged, whole);
    const posted = await fhir(`/Patient/${A}/$everything`, { as: "reader", method: "POST", body: { resourceType: "Parameters", parameter: [{ name: "_type", valueString: "Condition" }, { name: "_count", valueInteger: 1 }] } });
    assert.equal(posted.res.status, 200, posted.text);
    assert.deepEqual(refs(posted.body), ["Condition/ix-a-cond"]);
    assert.equal(posted.body.total, 2);
    const ns = await w.mf.getDurableObjectNamespace("FHIR");
    const served = async (name) => (await (await ns.get(ns.idFromName(name)).fetch("https://do/stats")).json()).served;
    const before = { a: await served(`patient/${A}`), directory: await served("directory") };
    await fhir(`/Patient/${A}/$everything`, { as: "reader" });
    assert.equal(await served(`patient/${A}`), before.a + 2, "the Patient's existence and one page");
    assert.equal(await served("directory"), before.directory);
  });
});

test("every FHIR response body above validates against R4 (fhir.resources, independent)", { timeout: 120_000 }, async (t) => {
  const python = join(ROOT, ".venv", "bin", "python");
  const output = execFileSync(python, [join(ROOT, "tests", "python", "validate_r4.py"), captured], { encoding: "utf8" });
  t.diagnostic(output.trim());
  assert.match(output, /validated \d+ FHIR response bodies, 0 invalid/);
});
