// Durable Object answers and commands larger than one JS RPC message (workerd refuses a
// serialized RPC message over 32 MiB; a string with any character above U+00FF is serialized
// two bytes per character): a search page, an $everything page and a backup page of large
// resources, each one answer of a partition, are served whole.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { APP, PRACTITIONER } from "./helpers/fixtures.mjs";
import { authorize, exchange } from "./helpers/flows.mjs";

const CLIENT = { ...APP, client_id: "large-app", scope: "launch/patient openid patient/*.rs", consent: "pre-approved" };
const P = "large-p";
const COUNT = 24;
// ≈0.9 MiB of text each (under the 1 MiB resource limit), with an em dash: 24 of them are
// ≈21.6 M characters, ≈43 MiB as one two-byte string.
const note = (i) => `${i} — ${"x".repeat(900 * 1024)}`;
const obs = (i) => ({
  resourceType: "Observation", id: `large-${String(i).padStart(2, "0")}`, status: "final", subject: { reference: `Patient/${P}` },
  code: { coding: [{ system: "http://loinc.org", code: "2339-0" }] }, note: [{ text: note(i) }],
});

let w;
let token;

async function load(resources) {
  const bundle = { resourceType: "Bundle", type: "transaction", entry: resources.map((r) => ({ resource: r, request: { method: "PUT", url: `${r.resourceType}/${r.id}` } })) };
  const res = await w.fetch("/admin/fhir/bundle", { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(bundle) });
  assert.ok(res.ok, `${res.status} ${(await res.text()).slice(0, 300)}`);
}

before(async () => {
  w = await startWorker();
  for (const [path, body] of [["/admin/clients", CLIENT], ["/admin/users", PRACTITIONER]]) {
    const res = await w.fetch(path, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
    assert.ok(res.ok, await res.text());
  }
  await load([{ resourceType: "Patient", id: P, name: [{ family: "Large" }], gender: "female", birthDate: "1980-02-03" }]);
  // Bundles of 8 (≈7 MiB each, under the 16 MiB bundle limit).
  for (let i = 0; i < COUNT; i += 8) await load(Array.from({ length: 8 }, (_, k) => obs(i + k)));
  const { code, verifier } = await authorize(w, { client_id: CLIENT.client_id, scope: CLIENT.scope, patient: P });
  token = (await exchange(w, code, verifier, { client_id: CLIENT.client_id })).body.access_token;
  assert.ok(token);
});
after(async () => {
  await w?.dispose();
});

const ids = (bundle) => bundle.entry.filter((e) => e.resource.resourceType === "Observation").map((e) => e.resource.id).sort();
const expected = Array.from({ length: COUNT }, (_, i) => `large-${String(i).padStart(2, "0")}`);

test("a search page of large resources is one partition answer over 32 MiB, served whole", async () => {
  const res = await w.fetch(`/fhir/Observation?_count=${COUNT}`, { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  assert.equal(res.status, 200, text.slice(0, 500));
  const bundle = JSON.parse(text);
  assert.equal(bundle.total, COUNT);
  assert.deepEqual(ids(bundle), expected);
  assert.equal(bundle.entry.find((e) => e.resource.id === "large-07").resource.note[0].text, note(7));
});

test("Patient/$everything with the large resources on one page", async () => {
  const res = await w.fetch(`/fhir/Patient/${P}/$everything?_count=${COUNT + 1}`, { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  assert.equal(res.status, 200, text.slice(0, 500));
  assert.deepEqual(ids(JSON.parse(text)), expected);
});

test("a backup reads the partition's versions of large resources", async () => {
  const lines = [];
  let url = "/admin/backup";
  while (url) {
    const res = await w.fetch(url, { headers: adminHeaders() });
    const text = await res.text();
    assert.equal(res.status, 200, text.slice(0, 500));
    lines.push(...text.split("\n").filter(Boolean));
    const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("link") ?? "");
    url = next ? new URL(next[1]).pathname + new URL(next[1]).search : null;
  }
  const versions = lines.map((l) => JSON.parse(l)).filter((r) => r.kind === "resource-version" && r.type === "Observation");
  assert.deepEqual(versions.map((v) => v.id).sort(), expected);
});
