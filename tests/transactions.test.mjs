// Transactions as current Synthea and EHR feeds send them, and conditional update/delete, on
// workerd (R4 http.html §3.1.0.8 conditional interactions, §3.1.0.11 transaction). The
// bundles come from the deterministic generator tests/fixtures/transactions/generate.mjs
// (hospitalInformation / practitionerInformation / patient bundles, Synthea's shape).
// The native twins are in crates/platform/src/fhir/api/transaction_tests.rs.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { startWorker, ROOT, tempDir } from "./helpers/worker.mjs";
import { seed, APP } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";
import { hospitalBundle, practitionerBundle, patientBundle, PATIENT_TYPES, SYNTHEA, NPI, shared, uuid } from "./fixtures/transactions/generate.mjs";

const CLIENT = { ...APP, client_id: "txn-app", scope: "launch launch/patient openid fhirUser patient/*.cruds user/*.cruds", consent: "pre-approved" };

let w;
const tokens = {};

async function token(scope) {
  const { code, verifier } = await authorize(w, { client_id: CLIENT.client_id, scope });
  const body = (await exchange(w, code, verifier, { client_id: CLIENT.client_id })).body;
  assert.ok(body.access_token, JSON.stringify(body));
  return body.access_token;
}

async function fhir(path, { as = "doctor", method = "GET", body, headers = {} } = {}) {
  const res = await w.fetch(`/fhir${path}`, {
    method,
    headers: { Authorization: `Bearer ${tokens[as]}`, ...(body ? { "Content-Type": "application/fhir+json" } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { res, body: text ? JSON.parse(text) : null };
}

const post = (bundle, as = "doctor") => fhir("", { as, method: "POST", body: bundle });
const statuses = (body) => body.entry.map((e) => e.response.status);
const total = async (query) => {
  const { res, body } = await fhir(`/${query}`);
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.total;
};
const idOf = (location) => location.split("/")[1];

before(async () => {
  w = await startWorker();
  await seed(w, { clients: [CLIENT] });
  tokens.doctor = await token("openid fhirUser user/*.cruds");
  tokens.ned = await token("launch/patient patient/*.cruds");
  const metadata = await (await w.fetch("/fhir/metadata")).json();
  const served = new Set(metadata.rest[0].resource.map((r) => r.type));
  for (const t of [...PATIENT_TYPES, "Organization", "Location", "Practitioner", "PractitionerRole"]) assert.ok(served.has(t), `${t} is served`);
});
after(() => w?.dispose());

const loads = {};

describe("loading Synthea-style bundles", () => {
  test("loading the hospital, practitioner and patient bundles twice leaves one copy of each conditional resource", async () => {
    for (const round of [1, 2]) {
      for (const [name, bundle] of [["hospital", hospitalBundle()], ["practitioner", practitionerBundle()], ["patient", patientBundle(1)]]) {
        const { res, body } = await post((bundle));
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.type, "transaction-response");
        loads[`${name}${round}`] = body;
      }
    }
    assert.deepEqual(statuses(loads.hospital1), ["201 Created", "201 Created"]);
    assert.deepEqual(statuses(loads.practitioner1), ["201 Created", "201 Created"]);
    assert.deepEqual(statuses(loads.hospital2), ["200 OK", "200 OK"], "the second load creates nothing");
    assert.deepEqual(statuses(loads.practitioner2), ["200 OK", "200 OK"]);
    assert.deepEqual(loads.hospital2.entry.map((e) => e.response.location), loads.hospital1.entry.map((e) => e.response.location));
    assert.deepEqual(loads.practitioner2.entry.map((e) => e.response.location), loads.practitioner1.entry.map((e) => e.response.location));
    assert.equal(await total(`Organization?identifier=${SYNTHEA}|${shared.organization}`), 1);
    assert.equal(await total(`Location?identifier=${SYNTHEA}|${shared.location}`), 1);
    assert.equal(await total(`Practitioner?identifier=${NPI}|${shared.npi}`), 1);
    assert.equal(await total(`PractitionerRole?identifier=${NPI}|${shared.npi}`), 1);
    // Synthea posts its patients unconditionally: each load is a patient of its own.
    assert.equal(await total(`Patient?identifier=${SYNTHEA}|${uuid("patient", 1)}`), 2);
    assert.ok(loads.patient1.entry.every((e) => e.response.status === "201 Created" && e.response.etag === 'W/"1"'));
  });

  test("conditional and urn:uuid references resolve to the exact ids", async () => {
    const [org, location] = loads.hospital1.entry.map((e) => e.response.location);
    const doctor = loads.practitioner1.entry[0].response.location;
    for (const load of [loads.patient1, loads.patient2]) {
      const at = (t) => load.entry.find((e) => e.response.location.startsWith(`${t}/`)).response.location;
      const encounter = (await fhir(`/${at("Encounter")}`)).body;
      assert.equal(encounter.participant[0].individual.reference, doctor);
      assert.equal(encounter.serviceProvider.reference, org);
      assert.equal(encounter.location[0].location.reference, location);
      assert.equal(encounter.subject.reference, at("Patient"));
      const observation = (await fhir(`/${at("Observation")}`)).body;
      assert.equal(observation.encounter.reference, at("Encounter"));
      assert.equal(observation.performer[0].reference, doctor);
      const eob = (await fhir(`/${at("ExplanationOfBenefit")}`)).body;
      assert.equal(eob.claim.reference, at("Claim"));
      assert.equal(eob.provider.reference, doctor);
    }
    assert.equal(idOf(loads.patient1.entry[0].response.location), uuid("patient", 1), "the first load keeps the urn:uuid ids");
    assert.notEqual(loads.patient2.entry[0].response.location, loads.patient1.entry[0].response.location, "the second gets new ones");
    const role = (await fhir(`/${loads.practitioner1.entry[1].response.location}`)).body;
    assert.equal(role.organization.reference, org);
    assert.equal(role.practitioner.reference, doctor);
    assert.equal(role.location[0].reference, location);
  });

  test("the generated bundles and what is stored from them are valid R4 (fhir.resources, independent)", async (t) => {
    const dir = tempDir("txn-bodies-");
    const bodies = [hospitalBundle(), practitionerBundle(), patientBundle(1)];
    for (const e of [...loads.hospital1.entry, ...loads.practitioner1.entry, ...loads.patient1.entry]) bodies.push((await fhir(`/${e.response.location}`)).body);
    bodies.forEach((body, i) => writeFileSync(join(dir, `${String(i).padStart(3, "0")}.json`), JSON.stringify(body)));
    const output = execFileSync(join(ROOT, ".venv", "bin", "python"), [join(ROOT, "tests", "python", "validate_r4.py"), dir], { encoding: "utf8" });
    t.diagnostic(output.trim());
    assert.match(output, new RegExp(`validated ${bodies.length} FHIR response bodies, 0 invalid`));
  });

  test("every type of the patient bundle is stored, readable and searchable by patient", async () => {
    assert.deepEqual(loads.patient1.entry.map((e) => e.response.location.split("/")[0]), PATIENT_TYPES);
    const patient = idOf(loads.patient1.entry[0].response.location);
    for (const e of loads.patient1.entry) {
      const { res, body } = await fhir(`/${e.response.location}`);
      assert.equal(res.status, 200, e.response.location);
      assert.equal(`${body.resourceType}/${body.id}`, e.response.location);
    }
    for (const t of PATIENT_TYPES.filter((t) => !["Patient", "Medication"].includes(t))) {
      assert.equal(await total(`${t}?patient=${patient}`), 1, t);
    }
    // Medication is shared reference data; MedicationAdministration refers to it by urn:uuid.
    const administration = (await fhir(`/${loads.patient1.entry.find((e) => e.response.location.startsWith("MedicationAdministration/")).response.location}`)).body;
    assert.equal(administration.medicationReference.reference, loads.patient1.entry.find((e) => e.response.location.startsWith("Medication/")).response.location);
  });

  // Issue 12's "Done when": each type Synthea added (CareTeam, Device, DocumentReference,
  // Provenance, SupplyDelivery, Medication, MedicationAdministration, ImagingStudy) searched by
  // its own R4 parameters (not only `patient`) and included from both sides, exact ids. Two
  // loads of patient bundle 1 are stored (the first test): each search finds both, or the one
  // of the load it names.
  test("the types Synthea added are searched by their own R4 parameters and included, exact ids", async () => {
    const ref = (location) => location.split("/").slice(0, 2).join("/");
    const at = (load, t) => ref(load.entry.find((e) => e.response.location.startsWith(`${t}/`)).response.location);
    const [one, two] = [loads.patient1, loads.patient2];
    const both = (t) => [at(one, t), at(two, t)].sort();
    const found = async (query, mode = "match") => {
      const { res, body } = await fhir(`/${query}`);
      assert.equal(res.status, 200, `${query}: ${JSON.stringify(body)}`);
      assert.ok(!body.entry?.some((e) => e.search.mode === "outcome"), `${query}: no parameter ignored`);
      return (body.entry ?? []).filter((e) => e.search.mode === mode).map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();
    };
    const doctor = ref(loads.practitioner1.entry[0].response.location);
    const org = ref(loads.hospital1.entry[0].response.location);
    const SNOMED = "http://snomed.info/sct";
    const searches = [
      ["CareTeam?status=active", both("CareTeam")],
      [`CareTeam?participant=${doctor}`, both("CareTeam")],
      // An open period (start only) is not within 2020 (eq) but starts after 2019 (sa).
      ["CareTeam?date=2020", []],
      ["CareTeam?date=sa2019&category:missing=true", both("CareTeam")],
      [`CareTeam?encounter=${at(one, "Encounter")}`, [at(one, "CareTeam")]],
      [`Device?type=${SNOMED}|337414009&status=active`, both("Device")],
      ["Device?udi-di=00012345678901", both("Device")],
      ["Device?udi-di=00012345678902", []],
      ["DocumentReference?type=http://loinc.org|34117-2&status=current", both("DocumentReference")],
      [`DocumentReference?author=${doctor}&custodian=${org}`, both("DocumentReference")],
      [`DocumentReference?encounter=${at(two, "Encounter")}`, [at(two, "DocumentReference")]],
      [`Provenance?target=${at(one, "Condition")}`, [at(one, "Provenance")]],
      [`Provenance?agent=${doctor}&recorded=ge2020`, both("Provenance")],
      [`Provenance?agent-type=author&patient=${at(two, "Patient").split("/")[1]}`, [at(two, "Provenance")]],
      ["SupplyDelivery?status=completed", both("SupplyDelivery")],
      ["SupplyDelivery?status=in-progress", []],
      ["Medication?code=http://www.nlm.nih.gov/research/umls/rxnorm|313782&status=active", both("Medication")],
      ["Medication?code:text=acetaminophen", both("Medication")],
      [`MedicationAdministration?medication=${at(two, "Medication")}`, [at(two, "MedicationAdministration")]],
      [`MedicationAdministration?context=${at(one, "Encounter")}&status=completed&effective-time=2020`, [at(one, "MedicationAdministration")]],
      ["ImagingStudy?modality=DX&bodysite=40983000", both("ImagingStudy")],
      ["ImagingStudy?identifier=urn:ietf:rfc:3986|urn:oid:1.2.840.99999999.1&started=sa2019", both("ImagingStudy")],
      ["ImagingStudy?modality=CT", []],
    ];
    for (const [query, expected] of searches) assert.deepEqual(await found(query), expected, query);

    const id = (load, t) => at(load, t).split("/")[1];
    const includes = [
      [`MedicationAdministration?_id=${id(one, "MedicationAdministration")}&_include=MedicationAdministration:medication`, [at(one, "Medication")]],
      [`CareTeam?_id=${id(one, "CareTeam")}&_include=CareTeam:participant`, [doctor, at(one, "Patient")].sort()],
      [`DocumentReference?_id=${id(two, "DocumentReference")}&_include=DocumentReference:custodian&_include=DocumentReference:encounter`, [at(two, "Encounter"), org].sort()],
      [`Provenance?_id=${id(one, "Provenance")}&_include=Provenance:target`, ["Condition", "Encounter", "Observation", "Patient"].map((t) => at(one, t))],
      [`Provenance?_id=${id(one, "Provenance")}&_include=Provenance:agent`, [doctor]],
      [`ImagingStudy?_id=${id(two, "ImagingStudy")}&_include=ImagingStudy:encounter`, [at(two, "Encounter")]],
      [`Device?_id=${id(one, "Device")}&_include=Device:patient`, [at(one, "Patient")]],
      [`SupplyDelivery?_id=${id(two, "SupplyDelivery")}&_include=SupplyDelivery:patient`, [at(two, "Patient")]],
      [`Medication?_id=${id(one, "Medication")}&_revinclude=MedicationAdministration:medication`, [at(one, "MedicationAdministration")]],
      [`Patient?_id=${id(one, "Patient")}&_revinclude=CareTeam:subject&_revinclude=Device:patient&_revinclude=DocumentReference:subject&_revinclude=SupplyDelivery:patient`,
        ["CareTeam", "Device", "DocumentReference", "SupplyDelivery"].map((t) => at(one, t))],
      [`Patient?_id=${id(two, "Patient")}&_revinclude=ImagingStudy:subject&_revinclude=MedicationAdministration:subject&_revinclude=Provenance:target`,
        ["ImagingStudy", "MedicationAdministration", "Provenance"].map((t) => at(two, t))],
      [`Condition?_id=${id(two, "Condition")}&_revinclude=Provenance:target`, [at(two, "Provenance")]],
    ];
    for (const [query, expected] of includes) {
      assert.equal((await found(query)).length, 1, query);
      assert.deepEqual(await found(query, "include"), expected.sort(), query);
    }
  });
});

describe("entries and conditional interactions", () => {
  let patient, observation;
  before(async () => {
    const { body } = await post((patientBundle(2)));
    patient = idOf(body.entry[0].response.location);
    observation = idOf(body.entry.find((e) => e.response.location.startsWith("Observation/")).response.location);
  });

  test("GET and DELETE entries answer per spec, the GETs after the writes", async () => {
    const { res, body } = await post({ resourceType: "Bundle", type: "transaction", entry: [
      { request: { method: "DELETE", url: `Observation/${observation}` } },
      { request: { method: "DELETE", url: "Observation/never-was" } },
      { request: { method: "DELETE", url: `Immunization?patient=${patient}` } },
      { resource: { resourceType: "Patient", identifier: [{ system: SYNTHEA, value: uuid("patient", 2) }], name: [{ family: "Renamed" }] },
        request: { method: "PUT", url: `Patient?identifier=${SYNTHEA}|${uuid("patient", 2)}` } },
      { request: { method: "GET", url: `Patient/${patient}` } },
      { request: { method: "GET", url: `Immunization?patient=${patient}` } },
      { request: { method: "GET", url: "Practitioner/nobody" } },
    ] });
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.deepEqual(statuses(body), ["204 No Content", "204 No Content", "204 No Content", "200 OK", "200 OK", "200 OK", "404 Not Found"]);
    assert.equal(body.entry[3].response.location, `Patient/${patient}`);
    assert.equal(body.entry[3].response.etag, 'W/"2"');
    assert.equal(body.entry[4].resource.name[0].family, "Renamed");
    assert.equal(body.entry[4].response.etag, 'W/"2"');
    assert.equal(body.entry[5].resource.total, 0);
    assert.equal(body.entry[6].response.outcome.issue[0].code, "not-found");
    assert.equal((await fhir(`/Observation/${observation}`)).res.status, 410);
    assert.equal(await total(`Immunization?patient=${patient}`), 0);
  });

  test("PUT [type]?search updates the one match, creates on none, 412 on several", async () => {
    const name = (family, value = uuid("patient", 2)) => ({ resourceType: "Patient", identifier: [{ system: SYNTHEA, value }], name: [{ family }] });
    const one = await fhir(`/Patient?identifier=${SYNTHEA}|${uuid("patient", 2)}`, { method: "PUT", body: name("Again") });
    assert.equal(one.res.status, 200, JSON.stringify(one.body));
    assert.equal(one.body.id, patient);
    assert.equal(one.res.headers.get("etag"), 'W/"3"');
    const none = await fhir(`/Patient?identifier=${SYNTHEA}|brand-new`, { method: "PUT", body: name("New", "brand-new") });
    assert.equal(none.res.status, 201, JSON.stringify(none.body));
    assert.match(none.res.headers.get("location"), new RegExp(`/fhir/Patient/${none.body.id}/_history/1$`));
    assert.equal(await total(`Patient?identifier=${SYNTHEA}|brand-new`), 1);
    const several = await fhir(`/Patient?identifier=${SYNTHEA}|${uuid("patient", 1)}`, { method: "PUT", body: name("X", uuid("patient", 1)) });
    assert.equal(several.res.status, 412);
    assert.equal(several.body.issue[0].code, "invalid");
    const other = await fhir(`/Patient?identifier=${SYNTHEA}|${uuid("patient", 2)}`, { method: "PUT", body: { ...name("X"), id: "someone-else" } });
    assert.equal(other.res.status, 400);
    const unknown = await fhir(`/Patient?colour=blue`, { method: "PUT", body: name("X") });
    assert.equal(unknown.res.status, 400);
    assert.equal(await total(`Patient?family=X`), 0, "nothing written by the refused ones");
  });

  test("DELETE [type]?search deletes the one match, nothing on none, 412 on several", async () => {
    const condition = await fhir(`/Condition?patient=${patient}`);
    assert.equal(condition.body.total, 1);
    const one = await fhir(`/Condition?patient=${patient}`, { method: "DELETE" });
    assert.equal(one.res.status, 204);
    assert.equal((await fhir(`/Condition/${condition.body.entry[0].resource.id}`)).res.status, 410);
    assert.equal((await fhir(`/Condition?patient=${patient}`, { method: "DELETE" })).res.status, 204, "no match: nothing to delete");
    const several = await fhir(`/Patient?identifier=${SYNTHEA}|${uuid("patient", 1)}`, { method: "DELETE" });
    assert.equal(several.res.status, 412);
    assert.equal(await total(`Patient?identifier=${SYNTHEA}|${uuid("patient", 1)}`), 2, "nothing deleted");
  });
});

describe("a failing transaction leaves nothing behind", () => {
  const marker = (family) => ({ fullUrl: `urn:uuid:${uuid(family, 1)}`, resource: { resourceType: "Organization", name: family }, request: { method: "POST", url: "Organization" } });

  test("a conditional reference that matches nothing (400) or several (412)", async () => {
    const bundle = (patientBundle(3));
    const practitioner = `Practitioner?identifier=${NPI}|0000000000`;
    const broken = structuredClone(bundle);
    broken.entry[1].resource.participant[0].individual.reference = practitioner;
    broken.entry.push(marker("Unresolved Clinic"));
    const none = await post(broken);
    assert.equal(none.res.status, 400, JSON.stringify(none.body));
    assert.equal(none.body.issue[0].code, "invalid");
    assert.match(none.body.issue[0].diagnostics, /matches no resource/);
    const ambiguous = structuredClone(bundle);
    ambiguous.entry[1].resource.subject.reference = `Patient?identifier=${SYNTHEA}|${uuid("patient", 1)}`;
    ambiguous.entry.push(marker("Ambiguous Clinic"));
    const several = await post(ambiguous);
    assert.equal(several.res.status, 412, JSON.stringify(several.body));
    assert.equal(await total(`Patient?identifier=${SYNTHEA}|${uuid("patient", 3)}`), 0);
    assert.equal(await total("Organization?name=Unresolved"), 0);
    assert.equal(await total("Organization?name=Ambiguous"), 0);
  });

  test("a storage failure in the patient's partition undoes the shared writes made before it", async () => {
    const doctor = idOf(loads.practitioner1.entry[0].response.location);
    const before = (await fhir(`/Practitioner/${doctor}`)).body;
    const bundle = (patientBundle(4));
    bundle.entry.push(marker("Compensated Clinic"));
    bundle.entry.push({ resource: { ...before, name: [{ family: "Overwritten" }] }, request: { method: "PUT", url: `Practitioner/${doctor}` } });
    // A Durable Object SQLite value holds at most 2 MB: this Observation fails in the patient's
    // partition, which is written after the shared ones.
    bundle.entry[3].resource.valueString = "x".repeat(3 * 1024 * 1024);
    delete bundle.entry[3].resource.valueQuantity;
    const { res, body } = await post(bundle);
    assert.equal(res.status, 500, JSON.stringify(body).slice(0, 500));
    assert.equal(body.issue[0].code, "exception");
    assert.match(body.issue[0].diagnostics, /undone/);
    assert.equal(await total("Organization?name=Compensated"), 0);
    assert.deepEqual((await fhir(`/Practitioner/${doctor}`)).body, before, "the update is undone, version and all");
    assert.equal(await total(`Patient?identifier=${SYNTHEA}|${uuid("patient", 4)}`), 0);
    assert.equal(await total(`Practitioner?family=Overwritten`), 0);
    // Nor in the patient's own partition: the entries written there before the failing one.
    assert.equal((await fhir(`/Patient/${uuid("patient", 4)}`)).res.status, 404);
    assert.equal(await total(`Encounter?patient=${uuid("patient", 4)}`), 0);
    assert.equal(await total(`Condition?patient=${uuid("patient", 4)}`), 0);
  });

  test("a patient token writes no shared resource through a bundle, conditional or not", async () => {
    const org = { resourceType: "Organization", identifier: [{ system: SYNTHEA, value: "org-by-a-patient" }], name: "Patient Clinic" };
    const { res, body } = await post({ resourceType: "Bundle", type: "transaction", entry: [
      { fullUrl: `urn:uuid:${uuid("org-by-a-patient", 1)}`, resource: org, request: { method: "POST", url: "Organization", ifNoneExist: `identifier=${SYNTHEA}|org-by-a-patient` } },
    ] }, "ned");
    assert.equal(res.status, 403, JSON.stringify(body));
    assert.equal(body.issue[0].code, "security");
    assert.equal(await total(`Organization?identifier=${SYNTHEA}|org-by-a-patient`), 0);
  });
});
