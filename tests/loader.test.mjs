// The data loader (npm start's and the CLI's) loads Bundles and NDJSON through the FHIR API as
// a SMART backend service (client_credentials + private_key_jwt, system/*.cruds).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startWorker, ADMIN_TOKEN, ROOT, tempDir } from "./helpers/worker.mjs";
import { loadFolder, loaderToken, patientCount } from "../scripts/admin-client.mjs";
import { NED } from "./helpers/fixtures.mjs";

let w;
before(async () => { w = await startWorker(); });
after(() => w.dispose());

test("Synthea bundles and an NDJSON file load through POST /fhir with a backend token", async () => {
  const lines = [];
  const loaded = await loadFolder(w.url, ADMIN_TOKEN, join(ROOT, "tests", "fixtures", "synthea"), { log: (l) => lines.push(l) });
  assert.equal(loaded.files, 3);
  assert.ok(loaded.stored > 200, `${loaded.stored} resources`);
  assert.match(lines[0], /^ {2}\[1\/3\] .*: \d+ resources$/);
  assert.equal(await patientCount(w.url, ADMIN_TOKEN), 3);

  const dir = tempDir("ndjson-");
  const practitioners = [1, 2].map((n) => ({ resourceType: "Practitioner", id: `nd-${n}`, name: [{ family: `Ndjson${n}` }] }));
  writeFileSync(join(dir, "practitioners.ndjson"), practitioners.map((p) => JSON.stringify(p)).join("\n") + "\n");
  const nd = await loadFolder(w.url, ADMIN_TOKEN, dir, { log: () => {} });
  assert.equal(nd.stored, 2);

  const { token } = await loaderToken(w.url, ADMIN_TOKEN);
  const read = await w.fetch("/fhir/Practitioner/nd-2", { headers: { Authorization: `Bearer ${token}` } });
  assert.equal((await read.json()).name[0].family, "Ndjson2");
  const patient = await w.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(patient.status, 200);
});
