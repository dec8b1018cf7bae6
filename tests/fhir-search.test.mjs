// FHIR R4 search as real apps send it (https://hl7.org/fhir/R4/search.html), on workerd:
// modifiers, date and quantity prefixes, several values, _sort keys, _total, _summary and
// _elements, chains and _has (from the attacker's side too), _include:iterate. Each test asserts
// the exact ids. The data is this file's own small transaction (below), written for these cases.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { APP, PRACTITIONER } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";

let w;
const tokens = {};
const CLIENT = {
  ...APP,
  client_id: "search-app",
  scope: "launch launch/patient openid fhirUser patient/*.rs user/*.rs patient/Observation.rs?category=laboratory user/Patient.rs user/Observation.rs?category=laboratory",
  consent: "pre-approved",
};

const loinc = (code, display) => ({ system: "http://loinc.org", code, display });
const category = (code) => [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category", code }] }];
const obs = (id, patient, fields) => ({ resourceType: "Observation", id, subject: { reference: `Patient/${patient}` }, ...fields });
const HEMOGLOBIN = { coding: [loinc("1234-5", "Hemoglobin")] };
const HEIGHT = { coding: [loinc("8302-2", "Body height")] };
const RESOURCES = [
  { resourceType: "Patient", id: "pa", gender: "female", birthDate: "1980-05-01", name: [{ family: "Smith", given: ["Ann"] }],
    text: { status: "generated", div: '<div xmlns="http://www.w3.org/1999/xhtml">Ann Smith</div>' }, maritalStatus: { text: "Married" } },
  { resourceType: "Patient", id: "pb", gender: "male", birthDate: "1990", name: [{ family: "Smithers", given: ["Bob"] }] },
  { resourceType: "Patient", id: "pc", name: [{ family: "Óscar" }] },
  { resourceType: "Encounter", id: "ea", status: "finished", class: { code: "AMB" }, subject: { reference: "Patient/pa" } },
  { resourceType: "Encounter", id: "eb", status: "finished", class: { code: "AMB" }, subject: { reference: "Patient/pb" } },
  obs("oa1", "pa", { status: "final", category: category("laboratory"), code: HEMOGLOBIN, effectiveDateTime: "2020-01-15", encounter: { reference: "Encounter/ea" }, valueQuantity: { value: 170, system: "http://unitsofmeasure.org", code: "cm" } }),
  obs("oa2", "pa", { status: "amended", category: category("vital-signs"), code: { ...HEIGHT, text: "Height" }, effectiveDateTime: "2021-06-01", encounter: { reference: "Encounter/ea" }, valueQuantity: { value: 70, system: "http://unitsofmeasure.org", code: "kg" } }),
  obs("oa3", "pa", { status: "preliminary", category: category("laboratory"), code: HEMOGLOBIN, effectivePeriod: { start: "2019-12-01", end: "2020-02-01" } }),
  obs("oa4", "pa", { status: "cancelled", category: category("laboratory"), code: { text: "free text only" }, effectiveDateTime: "2022" }),
  obs("oa5", "pa", { status: "final", code: HEIGHT, effectiveDateTime: "2023-03-03" }),
  obs("ob1", "pb", { status: "final", category: category("laboratory"), code: HEMOGLOBIN, effectiveDateTime: "2020-02-02", encounter: { reference: "Encounter/eb" } }),
  { resourceType: "ValueSet", id: "vs1", status: "active", url: "http://acme.org/fhir/ValueSet/123" },
  { resourceType: "ValueSet", id: "vs2", status: "active", url: "http://acme.org/fhir/ValueSet/1234" },
  { resourceType: "ValueSet", id: "vs3", status: "active", url: "http://other.org/ValueSet/1" },
  obs("ob2", "pb", { status: "final", category: category("vital-signs"), code: HEIGHT, effectiveDateTime: "2020-02-02" }),
];

async function admin(path, body) {
  const res = await w.fetch(path, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  assert.ok(res.ok, `${path}: ${res.status} ${await res.text()}`);
}

async function token(scope, options = {}) {
  const { code, verifier } = await authorize(w, { client_id: CLIENT.client_id, scope, ...options });
  const body = (await exchange(w, code, verifier, { client_id: CLIENT.client_id })).body;
  assert.ok(body.access_token, JSON.stringify(body));
  return body.access_token;
}

before(async () => {
  w = await startWorker();
  await admin("/admin/clients", CLIENT);
  await admin("/admin/users", PRACTITIONER);
  const entry = RESOURCES.map((resource) => ({ resource, request: { method: "PUT", url: `${resource.resourceType}/${resource.id}` } }));
  await admin("/admin/fhir/bundle", { resourceType: "Bundle", type: "transaction", entry });
  tokens.doctor = await token("openid fhirUser user/*.rs");
  tokens.ann = await token("launch/patient patient/*.rs", { patient: "pa" });
  tokens.labs = await token("launch/patient patient/Observation.rs?category=laboratory", { patient: "pa" });
  tokens.labDoctor = await token("openid fhirUser user/Patient.rs user/Observation.rs?category=laboratory");
});
after(() => w?.dispose());

async function get(path, as = "doctor") {
  const res = await w.fetch(`/fhir${path}`, { headers: { Authorization: `Bearer ${tokens[as]}` } });
  return { res, body: await res.json() };
}

/** The sorted ids of the entries of `mode` ("match" by default) of a 200 searchset. */
async function ids(path, as = "doctor", mode = "match") {
  const { res, body } = await get(path, as);
  assert.equal(res.status, 200, JSON.stringify(body));
  return (body.entry ?? []).filter((e) => e.search?.mode === mode).map((e) => (mode === "match" ? e.resource.id : `${e.resource.resourceType}/${e.resource.id}`)).sort();
}

/** The ids of the matches in the order the server gave. */
async function ordered(path, as = "doctor") {
  const { res, body } = await get(path, as);
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.entry.filter((e) => e.search.mode === "match").map((e) => e.resource.id);
}

async function refused(path, status = 400, code = "invalid", as = "doctor") {
  const { res, body } = await get(path, as);
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.resourceType, "OperationOutcome");
  assert.equal(body.issue[0].code, code);
}

describe("modifiers", () => {
  test(":missing on a token, a quantity and a date", async () => {
    assert.deepEqual(await ids("/Patient?gender:missing=true"), ["pc"]);
    assert.deepEqual(await ids("/Patient?gender:missing=false"), ["pa", "pb"]);
    assert.deepEqual(await ids("/Patient?birthdate:missing=true"), ["pc"]);
    assert.deepEqual(await ids("/Observation?patient=pa&value-quantity:missing=true"), ["oa3", "oa4", "oa5"]);
    assert.deepEqual(await ids("/Observation?patient=pa&value-quantity:missing=false"), ["oa1", "oa2"]);
    assert.deepEqual(await ids("/Observation?patient=pa&category:missing=true"), ["oa5"]);
    await refused("/Patient?gender:missing=maybe");
  });

  test(":not matches every resource without the code, those without any category included", async () => {
    assert.deepEqual(await ids("/Observation?patient=pa&status:not=final"), ["oa2", "oa3", "oa4"]);
    assert.deepEqual(await ids("/Observation?patient=pa&category:not=laboratory"), ["oa2", "oa5"]);
    assert.deepEqual(await ids("/Observation?patient=pa&code:not=http://loinc.org|1234-5,8302-2"), ["oa4"]);
  });

  test(":text searches the display and text of codes", async () => {
    assert.deepEqual(await ids("/Observation?patient=pa&code:text=hemo"), ["oa1", "oa3"]);
    assert.deepEqual(await ids("/Observation?patient=pa&code:text=body"), ["oa2", "oa5"]);
    assert.deepEqual(await ids("/Observation?patient=pa&code:text=HEIGHT"), ["oa2"]);
    assert.deepEqual(await ids("/Observation?patient=pa&code:text=free"), ["oa4"]);
  });

  test(":exact matches the whole string, case and accents included", async () => {
    assert.deepEqual(await ids("/Patient?family=smith"), ["pa", "pb"]);
    assert.deepEqual(await ids("/Patient?family:exact=Smith"), ["pa"]);
    assert.deepEqual(await ids("/Patient?family:exact=smith"), []);
    assert.deepEqual(await ids(`/Patient?family:exact=${encodeURIComponent("Óscar")}`), ["pc"]);
  });

  test(":contains matches anywhere in the string", async () => {
    assert.deepEqual(await ids("/Patient?family:contains=MITHE"), ["pb"]);
    assert.deepEqual(await ids("/Patient?name:contains=car"), ["pc"]);
    assert.deepEqual(await ids("/Patient?name:contains=ob,nn"), ["pa", "pb"]);
  });

  test(":below and :above on a uri", async () => {
    assert.deepEqual(await ids("/ValueSet?url=http://acme.org/fhir/ValueSet/123"), ["vs1"]);
    assert.deepEqual(await ids("/ValueSet?url:below=http://acme.org/fhir/"), ["vs1", "vs2"]);
    assert.deepEqual(await ids("/ValueSet?url:above=http://acme.org/fhir/ValueSet/123/_history/2"), ["vs1"]);
    assert.deepEqual(await ids("/ValueSet?url:below=http://acme.org/fhir/ValueSet/123,http://other.org/"), ["vs1", "vs3"], "…/1234 is not below …/123");
    assert.deepEqual(await ids("/ValueSet?url:above=http://acme.org/fhir"), []);
  });

  test(":above and :below where they mean nothing here, and unknown modifiers, are 400", async () => {
    await refused("/Observation?patient=pa&code:below=1234-5");
    await refused("/Observation?patient=pa&code:above=1234-5");
    await refused("/Observation?patient=pa&code:contains=1234");
    await refused("/Patient?family:not=smith");
  });
});

describe("prefixes and several values", () => {
  test("sa and eb compare the whole ranges", async () => {
    assert.deepEqual(await ids("/Observation?patient=pa&date=sa2020-01"), ["oa2", "oa4", "oa5"]);
    assert.deepEqual(await ids("/Observation?patient=pa&date=eb2021"), ["oa1", "oa3"]);
    assert.deepEqual(await ids("/Observation?patient=pa&date=eb2020-01-15"), []);
  });

  test("ap widens a date by 10% of its distance from now", async () => {
    // 2021-01-01 seen from late 2026: about 216 days either side, so June 2021 but not January 2020.
    assert.deepEqual(await ids("/Observation?patient=pa&date=ap2021-01-01"), ["oa2"]);
    assert.deepEqual(await ids("/Observation?patient=pa&date=ap2020-01-15"), ["oa1", "oa3"]);
  });

  test("several dates and several quantities are alternatives", async () => {
    assert.deepEqual(await ids("/Observation?patient=pa&date=2020-01-15,2022"), ["oa1", "oa4"]);
    assert.deepEqual(await ids("/Observation?patient=pa&value-quantity=170,70"), ["oa1", "oa2"]);
    assert.deepEqual(await ids("/Observation?patient=pa&value-quantity=70|http://unitsofmeasure.org|kg,170|http://unitsofmeasure.org|kg"), ["oa2"]);
    assert.deepEqual(await ids("/Observation?patient=pa&value-quantity=ap160"), ["oa1"]);
    assert.deepEqual(await ids("/Observation?patient=pa&value-quantity=eb100,sa169"), ["oa1", "oa2"]);
  });
});

describe("sorting, totals and subsets", () => {
  test("_sort takes several token, date and string keys", async () => {
    assert.deepEqual(await ordered("/Observation?patient=pa&_sort=status,-date"), ["oa2", "oa4", "oa5", "oa1", "oa3"]);
    assert.deepEqual(await ordered("/Observation?patient=pa&_sort=category,date"), ["oa5", "oa3", "oa1", "oa4", "oa2"], "no category first");
    assert.deepEqual(await ordered("/Patient?_sort=-family"), ["pc", "pb", "pa"]);
    assert.deepEqual(await ordered("/Observation?patient=pa&_sort=code,date"), ["oa4", "oa3", "oa1", "oa2", "oa5"]);
    await refused("/Observation?patient=pa&_sort=value-quantity");
  });

  test("_total=none leaves the total out and still links the next page", async () => {
    const { body } = await get("/Observation?patient=pa&_total=none&_count=2");
    assert.equal(body.total, undefined);
    assert.equal(body.entry.length, 2);
    assert.ok(body.link.some((l) => l.relation === "next"));
    const last = (await get("/Observation?patient=pa&_total=none&_count=2&_offset=4")).body;
    assert.equal(last.entry.length, 1);
    assert.ok(!last.link.some((l) => l.relation === "next"));
    assert.equal((await get("/Observation?patient=pa&_total=accurate")).body.total, 5);
  });

  test("_elements and _summary return SUBSETTED resources", async () => {
    const { body } = await get("/Observation?patient=pa&_id=oa1&_elements=status,valueQuantity");
    const r = body.entry[0].resource;
    assert.deepEqual(Object.keys(r).sort(), ["id", "meta", "resourceType", "status", "valueQuantity"]);
    assert.ok(r.meta.tag.some((t) => t.code === "SUBSETTED" && t.system === "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"));
    const summary = (await get("/Patient?_id=pa&_summary=true")).body.entry[0].resource;
    assert.deepEqual(Object.keys(summary).sort(), ["birthDate", "gender", "id", "meta", "name", "resourceType"], "Patient's isSummary elements");
    const text = (await get("/Patient?_id=pa&_summary=text")).body.entry[0].resource;
    assert.deepEqual(Object.keys(text).sort(), ["id", "meta", "resourceType", "text"], "text, id, meta (Patient has no mandatory top-level element)");
    const data = (await get("/Patient?_id=pa&_summary=data")).body.entry[0].resource;
    assert.deepEqual(Object.keys(data).sort(), ["birthDate", "gender", "id", "maritalStatus", "meta", "name", "resourceType"], "everything but text");
    assert.equal(data.name[0].family, "Smith");
    for (const r of [summary, text, data]) assert.ok(r.meta.tag.some((t) => t.code === "SUBSETTED"));
    const whole = (await get("/Patient?_id=pa&_summary=false")).body.entry[0].resource;
    assert.equal(whole.text.status, "generated");
    assert.ok(!whole.meta.tag?.some((t) => t.code === "SUBSETTED"));
    const count = (await get("/Observation?patient=pa&_summary=count")).body;
    assert.equal(count.total, 5);
    assert.deepEqual(count.entry, []);
    await refused("/Patient?_summary=true&_elements=name");
  });
});

describe("unknown parameters", () => {
  test("reported in an outcome entry and left out of the match, or refused under Prefer: handling=strict", async () => {
    const { res, body } = await get("/Observation?patient=pa&status=final&colour=blue&size:exact=9");
    assert.equal(res.status, 200);
    assert.deepEqual(body.entry.filter((e) => e.search.mode === "match").map((e) => e.resource.id).sort(), ["oa1", "oa5"]);
    const outcome = body.entry.filter((e) => e.search.mode === "outcome");
    assert.equal(outcome.length, 1);
    assert.deepEqual(outcome[0].resource.issue.map((i) => [i.severity, i.code, i.diagnostics]), [["warning", "not-supported", "ignored unknown search parameters: colour, size:exact"]]);
    assert.equal(body.total, 2);
    for (const prefer of ["handling=strict", "return=representation, handling=strict"]) {
      const strict = await w.fetch("/fhir/Observation?patient=pa&status=final&colour=blue", { headers: { Authorization: `Bearer ${tokens.doctor}`, Prefer: prefer } });
      const refused = await strict.json();
      assert.equal(strict.status, 400, prefer);
      assert.equal(refused.resourceType, "OperationOutcome");
      assert.equal(refused.issue[0].code, "invalid");
      assert.match(refused.issue[0].diagnostics, /colour/);
    }
    const lenient = await w.fetch("/fhir/Observation?patient=pa&status=final&colour=blue", { headers: { Authorization: `Bearer ${tokens.doctor}`, Prefer: "handling=lenient" } });
    assert.equal(lenient.status, 200);
  });
});

describe("chains and _has, never past the grant", () => {
  test("a chained parameter one level deep", async () => {
    assert.deepEqual(await ids("/Observation?subject:Patient.name=smithers"), ["ob1", "ob2"]);
    assert.deepEqual(await ids("/Observation?patient.name=ann&category=laboratory"), ["oa1", "oa3", "oa4"]);
    assert.deepEqual(await ids("/Observation?encounter.class=AMB&patient=pb"), ["ob1"]);
    assert.deepEqual(await ids("/Observation?subject:Patient.name=nobody"), []);
    await refused("/Observation?subject:Patient.name.family=x");
    await refused("/Observation?subject.name=x"); // Patient, Group, Location… all have a name
  });

  test("a chain cannot probe another patient or a type the token cannot search", async () => {
    assert.deepEqual(await ids("/Observation?subject:Patient.name=smithers", "ann"), []);
    assert.deepEqual(await ids("/Observation?subject:Patient.gender=male", "ann"), []);
    assert.deepEqual(await ids("/Observation?subject:Patient.name=smith", "ann"), ["oa1", "oa2", "oa3", "oa4", "oa5"]);
    await refused("/Observation?subject:Patient.name=smith", 403, "security", "labs");
  });

  test("_has one level deep", async () => {
    assert.deepEqual(await ids("/Patient?_has:Observation:patient:code=1234-5"), ["pa", "pb"]);
    assert.deepEqual(await ids("/Patient?_has:Observation:patient:code=8302-2&gender=male"), ["pb"]);
    assert.deepEqual(await ids("/Encounter?_has:Observation:encounter:status=amended&patient=pa"), ["ea"]);
    await refused("/Patient?_has:Observation:patient:_has:Observation:patient:code=x");
  });

  test("_has sees only the resources the token may read", async () => {
    assert.deepEqual(await ids("/Patient?_has:Observation:patient:code=1234-5", "ann"), ["pa"]);
    assert.deepEqual(await ids("/Patient?_has:Observation:patient:code=8302-2", "labDoctor"), [], "vital signs the token cannot read reveal nothing");
    assert.deepEqual(await ids("/Patient?_has:Observation:patient:code=1234-5", "labDoctor"), ["pa", "pb"]);
  });
});

describe("includes", () => {
  test("_include:iterate follows the included resources one level further", async () => {
    assert.deepEqual(await ids("/Observation?_id=oa1&_include=Observation:encounter", "ann", "include"), ["Encounter/ea"]);
    assert.deepEqual(await ids("/Observation?_id=oa1&_include=Observation:encounter&_include:iterate=Encounter:patient", "ann", "include"), ["Encounter/ea", "Patient/pa"]);
  });

  test("_revinclude:iterate, through the gate at each round", async () => {
    assert.deepEqual(await ids("/Patient?_revinclude=Encounter:patient&_revinclude:iterate=Observation:encounter", "ann", "include"), ["Encounter/ea", "Observation/oa1", "Observation/oa2"]);
  });
});
