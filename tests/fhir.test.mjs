// The FHIR R4 API on workerd with the Synthea fixtures: interactions, search, and the SMART
// rules — another patient's data is never returned under a patient/ scope (reads, searches,
// history, bundles), granular scopes filter, user/ scopes follow the user's own rights.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { ROOT, tempDir } from "./helpers/worker.mjs";
import { startWorker } from "./helpers/worker.mjs";
import { seed, NED, BUSTER, PATIENT_USER, APP } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";

let w;
let tokens = {};
// Every FHIR response body of this file is kept and, at the end, validated against R4 by an
// independent implementation (tests/python/validate_r4.py, the fhir.resources package).
const captured = tempDir("fhir-bodies-");
let captures = 0;
const FHIR_ALL = { ...APP, client_id: "fhir-app", scope: "launch launch/patient openid fhirUser patient/*.cruds user/*.cruds patient/Observation.rs?category=laboratory", consent: "pre-approved" };

async function token(scope, options = {}) {
  const { code, verifier } = await authorize(w, { client_id: FHIR_ALL.client_id, scope, ...options });
  const body = (await exchange(w, code, verifier, { client_id: FHIR_ALL.client_id })).body;
  assert.ok(body.access_token, JSON.stringify(body));
  return body.access_token;
}

before(async () => {
  w = await startWorker();
  await seed(w, { clients: [FHIR_ALL] });
  tokens.ned = await token("launch/patient patient/*.cruds");
  tokens.lab = await token("launch/patient patient/Observation.rs?category=laboratory");
  tokens.practitioner = await token("openid fhirUser user/*.cruds");
  tokens.nedUser = await token("openid fhirUser user/*.rs", { user: PATIENT_USER });
});
after(() => w.dispose());

describe("SMART enforcement", () => {
  test("no token is 401 with a Bearer challenge, a bad token 401 invalid_token, a missing scope 403", async () => {
    const none = await fhir(`/Patient/${NED}`, { as: null });
    assert.equal(none.res.status, 401);
    assert.equal(none.res.headers.get("www-authenticate"), 'Bearer realm="smart-edge"');
    assert.equal(none.body.resourceType, "OperationOutcome");
    const bad = await w.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: "Bearer x.y.z" } });
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get("www-authenticate"), /error="invalid_token"/);
    const lab = await fhir(`/Condition?patient=${NED}`, { as: "lab" });
    assert.equal(lab.res.status, 403);
    assert.equal(lab.body.resourceType, "OperationOutcome");
    assert.match(lab.res.headers.get("www-authenticate"), /insufficient_scope/);
  });

  test("patient/ scopes never return another patient's data: read, search, history", async () => {
    assert.equal((await fhir(`/Patient/${NED}`)).res.status, 200);
    assert.equal((await fhir(`/Patient/${BUSTER}`)).res.status, 404);
    const theirs = await fhir(`/Observation?patient=${BUSTER}`);
    assert.equal(theirs.res.status, 200);
    assert.equal(theirs.body.total, 0);
    const buster = await fhir(`/Observation?patient=${BUSTER}&_count=1`, { as: "practitioner" });
    const busterObs = buster.body.entry[0].resource.id;
    assert.equal((await fhir(`/Observation/${busterObs}`)).res.status, 404);
    assert.equal((await fhir(`/Observation/${busterObs}/_history`)).res.status, 404);
    const mine = await fhir(`/Observation?_count=500`);
    assert.ok(mine.body.total > 0);
    for (const e of mine.body.entry) assert.equal(e.resource.subject.reference, `Patient/${NED}`);
  });

  test("a patient-scoped request touches exactly one partition", async () => {
    const ns = await w.mf.getDurableObjectNamespace("FHIR");
    const served = async (name) => (await (await ns.get(ns.idFromName(name)).fetch("https://do/stats")).json()).served;
    const before = { ned: await served(`patient/${NED}`), buster: await served(`patient/${BUSTER}`), directory: await served("directory") };
    await fhir(`/Observation?code=http://loinc.org|8302-2&_sort=-date`);
    await fhir(`/Patient/${NED}`);
    assert.equal(await served(`patient/${NED}`), before.ned + 2);
    assert.equal(await served("directory"), before.directory, "no directory lookup");
    assert.equal(await served(`patient/${BUSTER}`), before.buster);
  });

  test("granular scopes filter: patient/Observation.rs?category=laboratory sees laboratory results only", async () => {
    const all = await fhir(`/Observation?_count=500`, { as: "ned" });
    const lab = await fhir(`/Observation?_count=500`, { as: "lab" });
    assert.ok(lab.body.total > 0 && lab.body.total < all.body.total, `${lab.body.total} of ${all.body.total}`);
    for (const e of lab.body.entry) {
      assert.ok(e.resource.category.some((c) => c.coding.some((cd) => cd.code === "laboratory")));
    }
    const vital = all.body.entry.find((e) => e.resource.category?.some((c) => c.coding.some((cd) => cd.code === "vital-signs")));
    assert.equal((await fhir(`/Observation/${vital.resource.id}`, { as: "lab" })).res.status, 404);
  });

  test("user/ scopes: a practitioner sees every patient, a patient user only their own compartment", async () => {
    assert.equal((await fhir(`/Patient/${BUSTER}`, { as: "practitioner" })).res.status, 200);
    assert.equal((await fhir(`/Patient/${BUSTER}`, { as: "nedUser" })).res.status, 404);
    const own = await fhir(`/Observation?patient=${BUSTER}`, { as: "nedUser" });
    assert.equal(own.body.total, 0);
    const patients = await fhir(`/Patient`, { as: "practitioner" });
    assert.equal(patients.body.total, 3);
  });

  test("a transaction under a patient/ scope may not write into another compartment", async () => {
    const bundle = { resourceType: "Bundle", type: "transaction", entry: [
      { fullUrl: "urn:uuid:new-obs", resource: { resourceType: "Observation", status: "final", code: { text: "x" }, subject: { reference: `Patient/${BUSTER}` } }, request: { method: "POST", url: "Observation" } },
    ] };
    const res = await fhir("", { method: "POST", body: bundle });
    assert.equal(res.res.status, 403);
    assert.equal((await fhir(`/Observation?patient=${BUSTER}&code:text=x`, { as: "practitioner" })).body.total, 0, "nothing was written");
  });
});

describe("interactions", () => {
  test("create, read, update with If-Match, vread, history, delete", async () => {
    const created = await fhir("/Observation", { method: "POST", body: { resourceType: "Observation", status: "preliminary", code: { coding: [{ system: "http://loinc.org", code: "2339-0" }] }, subject: { reference: `Patient/${NED}` }, effectiveDateTime: "2026-11-01T10:00:00Z", meta: { versionId: "99" } } });
    assert.equal(created.res.status, 201);
    const id = created.body.id;
    assert.match(created.res.headers.get("location"), new RegExp(`/fhir/Observation/${id}/_history/1$`));
    assert.equal(created.res.headers.get("etag"), 'W/"1"');
    assert.equal(created.body.meta.versionId, "1", "meta is the server's");
    const read = await fhir(`/Observation/${id}`);
    assert.equal(read.body.status, "preliminary");
    assert.ok(read.res.headers.get("last-modified"));

    const update = { ...read.body, status: "final" };
    const stale = await fhir(`/Observation/${id}`, { method: "PUT", body: update, headers: { "If-Match": 'W/"7"' } });
    assert.equal(stale.res.status, 412);
    const ok = await fhir(`/Observation/${id}`, { method: "PUT", body: update, headers: { "If-Match": 'W/"1"', Prefer: "return=minimal" } });
    assert.equal(ok.res.status, 200);
    assert.equal(ok.body, null, "return=minimal");
    assert.equal(ok.res.headers.get("etag"), 'W/"2"');
    assert.equal((await fhir(`/Observation/${id}/_history/1`)).body.status, "preliminary");
    const history = await fhir(`/Observation/${id}/_history`);
    assert.equal(history.body.type, "history");
    assert.deepEqual(history.body.entry.map((e) => e.resource.meta.versionId), ["2", "1"]);

    const typeHistory = await fhir(`/Observation/_history`);
    assert.equal(typeHistory.body.type, "history");
    assert.ok(typeHistory.body.entry.some((e) => e.resource?.id === id && e.resource.meta.versionId === "2"));
    for (const e of typeHistory.body.entry) if (e.resource) assert.equal(e.resource.subject.reference, `Patient/${NED}`);
    assert.equal((await fhir(`/Observation/_history`, { as: "practitioner" })).res.status, 400);

    assert.equal((await fhir(`/Observation/${id}`, { method: "DELETE" })).res.status, 204);
    assert.equal((await fhir(`/Observation/${id}`)).res.status, 410);
    const found = await fhir(`/Observation?code=http://loinc.org|2339-0&date=2026-11-01`);
    assert.ok(!ids(found.body).includes(id), "deleted resources leave the search index");
  });

  test("update creates with a client id, and 50 concurrent If-Match updates: each accepted write is in the history, every other is 412", async () => {
    const id = "concurrency-test";
    const created = await fhir(`/Observation/${id}`, { method: "PUT", body: { resourceType: "Observation", id, status: "preliminary", code: { text: "count" }, subject: { reference: `Patient/${NED}` }, valueInteger: 0 } });
    assert.equal(created.res.status, 201);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      fhir(`/Observation/${id}`, { method: "PUT", body: { resourceType: "Observation", id, status: "final", code: { text: "count" }, subject: { reference: `Patient/${NED}` }, valueInteger: i + 1 }, headers: { "If-Match": 'W/"1"' } })));
    const accepted = results.filter((r) => r.res.status === 200);
    const refused = results.filter((r) => r.res.status === 412);
    assert.equal(accepted.length + refused.length, 50);
    assert.equal(accepted.length, 1, "all 50 raced for version 1");
    const history = await fhir(`/Observation/${id}/_history`);
    assert.equal(history.body.total, 1 + accepted.length);
    assert.equal(history.body.entry[0].resource.valueInteger, accepted[0].body.valueInteger);
  });

  test("bad input is a 4xx OperationOutcome and writes nothing", async () => {
    const cases = [
      [{ method: "POST", body: "{not json" }, "/Observation", 400],
      [{ method: "POST", body: { resourceType: "Condition" } }, "/Observation", 400],
      [{ method: "POST", body: [1, 2] }, "/Observation", 400],
      [{ method: "PUT", body: { resourceType: "Observation", id: "other" } }, "/Observation/abc", 400],
      [{ method: "GET" }, "/Spaceship", 404],
      [{ method: "GET" }, "/Observation/bad id!", 400],
      [{ method: "GET" }, "/Observation?date=yesterday", 400],
      [{ method: "GET" }, "/Observation?_count=100000", 400],
      [{ method: "GET" }, "/Observation?foo=1", 400, { Prefer: "handling=strict" }],
      [{ method: "PATCH", body: {} }, "/Observation/abc", 415], // a JSON Patch, not a resource
      [{ method: "PATCH", body: [] }, "/Observation", 405],
      [{ method: "POST", body: { resourceType: "Bundle", type: "transaction", entry: [{ fullUrl: "urn:uuid:a", resource: { resourceType: "Observation", status: "final", code: { text: "x" }, subject: { reference: "urn:uuid:dangling" } }, request: { method: "POST", url: "Observation" } }] } }, "", 400],
    ];
    for (const [init, path, status, headers] of cases) {
      const res = await fhir(path, { ...init, headers });
      assert.equal(res.res.status, status, `${init.method} ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.resourceType, "OperationOutcome");
    }
    const json = await w.fetch("/fhir/Observation", { method: "POST", headers: { Authorization: `Bearer ${tokens.ned}`, "Content-Type": "text/plain" }, body: "{}" });
    assert.equal(json.status, 415);
  });

  test("a batch processes each entry on its own: one bad or forbidden entry does not stop the others", async () => {
    const batch = { resourceType: "Bundle", type: "batch", entry: [
      { resource: { resourceType: "Observation", id: "batch-ok", status: "final", code: { text: "batch" }, subject: { reference: `Patient/${NED}` } }, request: { method: "PUT", url: "Observation/batch-ok" } },
      { resource: { resourceType: "Observation", id: "batch-other", status: "final", code: { text: "batch" }, subject: { reference: `Patient/${BUSTER}` } }, request: { method: "PUT", url: "Observation/batch-other" } },
      { resource: { resourceType: "Spaceship" }, request: { method: "POST", url: "Spaceship" } },
    ] };
    const res = await fhir("", { method: "POST", body: batch });
    assert.equal(res.res.status, 200);
    assert.equal(res.body.type, "batch-response");
    assert.match(res.body.entry[0].response.status, /^20[01] /);
    assert.deepEqual(res.body.entry.slice(1).map((e) => e.response.status), ["403", "400"]);
    assert.equal(res.body.entry[1].response.outcome.resourceType, "OperationOutcome");
    assert.equal((await fhir("/Observation/batch-ok")).res.status, 200);
    assert.equal((await fhir("/Observation/batch-other", { as: "practitioner" })).res.status, 404);
  });

  test("a transaction bundle is written atomically per patient, urn:uuid references rewritten", async () => {
    const bundle = { resourceType: "Bundle", type: "transaction", entry: [
      { fullUrl: "urn:uuid:enc-1", resource: { resourceType: "Encounter", status: "finished", class: { code: "AMB" }, subject: { reference: `Patient/${NED}` }, period: { start: "2026-11-20T09:00:00Z" } }, request: { method: "POST", url: "Encounter" } },
      { fullUrl: "urn:uuid:obs-1", resource: { resourceType: "Observation", status: "final", code: { text: "from bundle" }, subject: { reference: `Patient/${NED}` }, encounter: { reference: "urn:uuid:enc-1" } }, request: { method: "POST", url: "Observation" } },
    ] };
    const res = await fhir("", { method: "POST", body: bundle });
    assert.equal(res.res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.type, "transaction-response");
    assert.deepEqual(res.body.entry.map((e) => e.response.status), ["201 Created", "201 Created"]);
    const obs = await fhir(`/${res.body.entry[1].response.location}`);
    assert.equal(obs.body.encounter.reference, res.body.entry[0].response.location);
  });
});

describe("search", () => {
  test("token, date with prefixes, sort, paging that keeps working, _summary=count, unknown parameters reported", async () => {
    const height = await fhir(`/Observation?patient=${NED}&code=http://loinc.org|8302-2&_sort=-date`);
    assert.ok(height.body.total >= 2);
    const dates = height.body.entry.map((e) => e.resource.effectiveDateTime);
    assert.deepEqual(dates, [...dates].sort().reverse());
    assert.ok(height.body.entry.every((e) => e.resource.code.coding.some((c) => c.code === "8302-2")));
    const bare = await fhir(`/Observation?code=8302-2`);
    assert.equal(bare.body.total, height.body.total, "a code without system matches any system");

    const since = await fhir(`/Observation?date=ge2019`);
    const before = await fhir(`/Observation?date=lt2019`);
    const dated = await fhir(`/Observation?date=ge1000&_summary=count`);
    assert.equal(since.body.total + before.body.total, dated.body.total);
    assert.equal(dated.body.entry.length, 0);
    const all = await fhir(`/Observation?_summary=count`);
    assert.ok(all.body.total >= dated.body.total);

    let page = await fhir(`/Observation?_count=10&_sort=date`);
    const seen = [];
    while (page) {
      seen.push(...ids(page.body));
      const next = page.body.link.find((l) => l.relation === "next");
      page = next ? await fhir(new URL(next.url).pathname.replace("/fhir", "") + new URL(next.url).search) : null;
    }
    assert.equal(seen.length, all.body.total);
    assert.equal(new Set(seen).size, seen.length, "no duplicates across pages");

    const unknown = await fhir(`/Observation?frobnicate=1&_count=1`);
    assert.equal(unknown.res.status, 200);
    const warning = unknown.body.entry.find((e) => e.search.mode === "outcome");
    assert.match(warning.resource.issue[0].diagnostics, /frobnicate/);
  });

  test("_id, _lastUpdated, reference forms and _total", async () => {
    const one = await fhir(`/Observation?_count=1`);
    const id = one.body.entry[0].resource.id;
    const byId = await fhir(`/Observation?_id=${id}`);
    assert.deepEqual(ids(byId.body), [id]);
    const updated = one.body.entry[0].resource.meta.lastUpdated.slice(0, 10);
    const recent = await fhir(`/Observation?_lastUpdated=ge${updated}&_summary=count`);
    const old = await fhir(`/Observation?_lastUpdated=lt2000&_summary=count`);
    assert.ok(recent.body.total > 0);
    assert.equal(old.body.total, 0);
    const full = await fhir(`/Observation?subject=Patient/${NED}&_summary=count`, { as: "practitioner" });
    const bare = await fhir(`/Observation?patient=${NED}&_summary=count&_total=accurate`, { as: "practitioner" });
    assert.equal(full.body.total, bare.body.total);
    assert.ok(full.body.total > 0);
  });

  test("POST _search, string search on names, and value-quantity", async () => {
    const form = await w.fetch("/fhir/Patient/_search", { method: "POST", headers: { Authorization: `Bearer ${tokens.practitioner}`, "Content-Type": "application/x-www-form-urlencoded" }, body: "name=hin" });
    const body = await form.json();
    assert.equal(body.total, 1);
    assert.equal(body.entry[0].resource.id, NED);
    const heavy = await fhir(`/Observation?patient=${NED}&value-quantity=gt1000`);
    assert.ok(heavy.body.entry.every((e) => e.resource.valueQuantity.value > 1000));
  });

  test("_include and _revinclude add the referenced and referencing resources, within the rules", async () => {
    const withEncounters = await fhir(`/Observation?code=http://loinc.org|8302-2&_include=Observation:encounter&_include=Observation:patient`);
    const included = withEncounters.body.entry.filter((e) => e.search.mode === "include").map((e) => e.resource);
    const matched = withEncounters.body.entry.filter((e) => e.search.mode === "match").map((e) => e.resource);
    const wanted = new Set(matched.map((o) => o.encounter.reference));
    for (const ref of wanted) assert.ok(included.some((r) => `${r.resourceType}/${r.id}` === ref), ref);
    assert.ok(included.some((r) => r.resourceType === "Patient" && r.id === NED));
    assert.equal(withEncounters.body.total, matched.length, "total counts matches only");

    const encounters = await fhir(`/Encounter?_count=1&_sort=-date&_revinclude=Observation:encounter`);
    const encounter = encounters.body.entry.find((e) => e.search.mode === "match").resource;
    const revs = encounters.body.entry.filter((e) => e.search.mode === "include").map((e) => e.resource);
    assert.ok(revs.length > 0);
    for (const o of revs) assert.equal(o.encounter.reference, `Encounter/${encounter.id}`);

    // A granular scope's filter applies to what is included too.
    const lab = await fhir(`/Encounter?_revinclude=Observation:encounter&_count=500`, { as: "lab" });
    assert.equal(lab.res.status, 403, "the lab token cannot search encounters");
    const practitioners = await fhir(`/Encounter?_count=3&_include=Encounter:patient`, { as: "nedUser" });
    for (const e of practitioners.body.entry.filter((x) => x.search.mode === "include")) assert.equal(e.resource.id, NED);
  });

  test("conditional create returns the existing match instead of a duplicate", async () => {
    const body = { resourceType: "Observation", status: "final", identifier: [{ system: "urn:test", value: "cond-1" }], code: { text: "conditional" }, subject: { reference: `Patient/${NED}` } };
    const first = await fhir("/Observation", { method: "POST", body, headers: { "If-None-Exist": "identifier=urn:test|cond-1" } });
    assert.equal(first.res.status, 201);
    const second = await fhir("/Observation", { method: "POST", body, headers: { "If-None-Exist": "identifier=urn:test|cond-1" } });
    assert.equal(second.res.status, 200);
    assert.equal(second.body.id, first.body.id);
    const bad = await fhir("/Observation", { method: "POST", body, headers: { "If-None-Exist": "nonsense=1" } });
    assert.equal(bad.res.status, 400);
  });

  test("without patient context (a practitioner's user/ scope) a search spans every patient, merged and paged in order", async () => {
    const perPatient = await Promise.all([NED, BUSTER].map((p) => fhir(`/Observation?patient=${p}&code=http://loinc.org|8302-2&_summary=count`, { as: "practitioner" })));
    const all = await fhir(`/Observation?code=http://loinc.org|8302-2&_sort=-date&_count=5`, { as: "practitioner" });
    assert.equal(all.res.status, 200);
    assert.ok(all.body.total >= perPatient[0].body.total + perPatient[1].body.total);
    const subjects = new Set();
    let page = all;
    const dates = [];
    while (page) {
      for (const e of page.body.entry.filter((x) => x.search.mode === "match")) {
        subjects.add(e.resource.subject.reference);
        dates.push(e.resource.effectiveDateTime);
      }
      const next = page.body.link.find((l) => l.relation === "next");
      page = next ? await fhir(new URL(next.url).pathname.replace("/fhir", "") + new URL(next.url).search, { as: "practitioner" }) : null;
    }
    assert.equal(dates.length, all.body.total);
    assert.ok(subjects.size >= 2, "results from several patients");
    const instants = dates.map((d) => Date.parse(d));
    assert.deepEqual(instants, [...instants].sort((a, b) => b - a), "newest first across partitions");
  });

  test("the CapabilityStatement lists the resources, interactions and search parameters served", async () => {
    const cs = (await w.json("/fhir/metadata")).body;
    const obs = cs.rest[0].resource.find((r) => r.type === "Observation");
    assert.deepEqual(obs.interaction.map((i) => i.code).sort(), ["create", "delete", "history-instance", "history-type", "patch", "read", "search-type", "update", "vread"]);
    assert.ok(obs.searchParam.some((p) => p.name === "value-quantity" && p.type === "quantity"));
    assert.equal(obs.conditionalRead, "full-support");
    assert.ok(obs.searchInclude.includes("Observation:encounter") && !obs.searchInclude.includes("Observation:code"));
    const patient = cs.rest[0].resource.find((r) => r.type === "Patient");
    assert.ok(patient.searchRevInclude.includes("Observation:subject") && !patient.searchRevInclude.includes("Observation:encounter"));
    // Modifiers and prefixes, by parameter type (R4's searchParam has no element for them).
    for (const served of ["token: `:missing` `:not` `:text`", "string: `:missing` `:exact` `:contains`", "uri: `:missing` `:below` `:above`",
      "date: `:missing`, prefixes eq ne gt lt ge le sa eb ap", "quantity: `:missing`, prefixes eq ne gt lt ge le sa eb ap", "`Provenance:target`"]) {
      assert.ok(cs.rest[0].documentation.includes(served), served);
    }
    // What it advertises is served: a modifier of each kind, an include and a revinclude.
    for (const path of ["/Patient?family:exact=Hintz", "/Observation?code:not=8302-2&_count=1", "/Observation?date=sa2019&_count=1", "/ValueSet?url:below=http://a.org/",
      "/Observation?_include=Observation:encounter&_count=1", "/Patient?_revinclude=Observation:subject&_count=1", "/Patient?_revinclude=Provenance:target&_count=1"]) {
      const res = await fhir(path, { as: "practitioner", headers: { Prefer: "handling=strict" } });
      assert.equal(res.res.status, 200, `${path}: ${JSON.stringify(res.body)}`);
    }
  });
});

test("every FHIR response body above validates against R4 (fhir.resources, independent)", { timeout: 120_000 }, async (t) => {
  const metadata = await w.fetch("/fhir/metadata");
  writeFileSync(join(captured, "metadata.json"), await metadata.text());
  const python = join(ROOT, ".venv", "bin", "python");
  // Last in the file: node:test runs top-level tests in order.
  const output = execFileSync(python, [join(ROOT, "tests", "python", "validate_r4.py"), captured], { encoding: "utf8" });
  t.diagnostic(output.trim());
  assert.match(output, /validated \d+ FHIR response bodies, 0 invalid/);
  // The validator is not vacuous: a body with a wrong type is refused.
  const broken = tempDir("fhir-broken-");
  writeFileSync(join(broken, "bad.json"), JSON.stringify({ resourceType: "Patient", birthDate: "not-a-date" }));
  assert.throws(() => execFileSync(python, [join(ROOT, "tests", "python", "validate_r4.py"), broken], { encoding: "utf8", stdio: "pipe" }), (e) => /INVALID bad.json/.test(e.stdout));
});

async function fhir(path, { as = "ned", method = "GET", body, headers = {} } = {}) {
  const res = await w.fetch(`/fhir${path}`, {
    method,
    headers: { ...(as ? { Authorization: `Bearer ${tokens[as]}` } : {}), ...(body ? { "Content-Type": "application/fhir+json" } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed = text ? JSON.parse(text) : null;
  if (parsed?.resourceType) writeFileSync(join(captured, `${String(++captures).padStart(4, "0")}.json`), text);
  return { res, body: parsed };
}

const ids = (bundle) => bundle.entry.filter((e) => e.search?.mode === "match").map((e) => e.resource.id);
