// Bulk Data `$export` throughput on workerd: load the sample bundles (the 40 Synthea patients in
// ../shared/fhir-data/synthea-r4, or SMART_EDGE_DATA, else the 3 test fixtures), then a
// system-level export with a backend-services token (client_credentials + private_key_jwt):
// kick-off, polling every 100 ms, download of every NDJSON file. Prints one JSON line:
// resources exported, seconds from kick-off to the manifest and to the last byte, resources/s,
// and workerd's CPU (user+system from /proc) per resource; also the ingest rate of the load
// (POST /admin/fhir/bundle, one bundle at a time).
//   node bench/export.mjs [rounds=3]
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import * as jose from "jose";
import { startWorker, adminHeaders, ROOT } from "../tests/helpers/worker.mjs";
import { form } from "../tests/helpers/flows.mjs";
import { cpuMs, workerdPid } from "./process.mjs";

const ROUNDS = Number(process.argv[2] ?? 3);
const candidates = [process.env.SMART_EDGE_DATA, join(ROOT, "..", "shared", "fhir-data", "synthea-r4"), join(ROOT, "..", "..", "shared", "fhir-data", "synthea-r4")];
const dataDir = candidates.find((d) => d && existsSync(d)) ?? join(ROOT, "tests", "fixtures", "synthea");

const w = await startWorker();
const { publicKey, privateKey } = await jose.generateKeyPair("ES384", { extractable: true });
const jwk = { ...(await jose.exportJWK(publicKey)), kid: "bench-1", alg: "ES384" };
const admin = (path, body) => w.fetch(path, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body });
await admin("/admin/clients", JSON.stringify({ client_id: "bench-bulk", client_name: "bench-bulk", client_type: "backend", scope: "system/*.rs", jwks: { keys: [jwk] } }));
const files = readdirSync(dataDir).filter((f) => f.endsWith(".json")).sort((a, b) => Number(!/Information/.test(a)) - Number(!/Information/.test(b)));
let loaded = 0;
const ingestStart = performance.now();
for (const file of files) {
  const body = readFileSync(join(dataDir, file), "utf8");
  const res = await admin("/admin/fhir/bundle", body);
  if (!res.ok) throw new Error(`${file}: ${res.status} ${await res.text()}`);
  loaded += JSON.parse(body).entry?.length ?? 0;
}
const ingestSeconds = (performance.now() - ingestStart) / 1000;

async function token() {
  const assertion = await new jose.SignJWT({ iss: "bench-bulk", sub: "bench-bulk", aud: `${w.url}/auth/token`, jti: randomUUID() })
    .setProtectedHeader({ alg: "ES384", kid: "bench-1", typ: "JWT" }).setExpirationTime("4m").sign(privateKey);
  const res = await w.fetch("/auth/token", form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion, scope: "system/*.rs" }));
  return (await res.json()).access_token;
}

const pid = workerdPid();
const runs = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const auth = { Authorization: `Bearer ${await token()}` };
    const cpu0 = cpuMs(pid);
    const t0 = performance.now();
    const kick = await w.fetch("/fhir/$export", { headers: { ...auth, Accept: "application/fhir+json", Prefer: "respond-async" } });
    if (kick.status !== 202) throw new Error(`kick-off ${kick.status} ${await kick.text()}`);
    const location = kick.headers.get("content-location");
    let manifest;
    while (!manifest) {
      const res = await fetch(location, { headers: auth });
      if (res.status === 200) manifest = await res.json();
      else if (res.status === 202) await new Promise((r) => setTimeout(r, 100));
      else throw new Error(`status ${res.status} ${await res.text()}`);
    }
    const tManifest = performance.now();
    let resources = 0;
    for (const output of manifest.output) {
      const text = await (await fetch(output.url, { headers: auth })).text();
      resources += text.split("\n").filter(Boolean).length;
    }
    const tDone = performance.now();
    runs.push({ resources, manifest_s: (tManifest - t0) / 1000, total_s: (tDone - t0) / 1000, cpu_ms: cpuMs(pid) - cpu0, files: manifest.output.length });
  }
} finally {
  await w.dispose();
}
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const total = median(runs.map((r) => r.total_s));
console.log(JSON.stringify({
  bench: "$export (system level, backend token, kick-off → manifest → every file downloaded)",
  data: dataDir, bundles: files.length, loaded_resources: loaded, ingest_resources_per_s: Math.round(loaded / ingestSeconds), exported_resources: runs[0].resources, files: runs[0].files, rounds: ROUNDS,
  manifest_s: median(runs.map((r) => r.manifest_s)), total_s: total,
  resources_per_s: Math.round(runs[0].resources / total),
  cpu_ms_per_resource: Number(median(runs.map((r) => r.cpu_ms / r.resources)).toFixed(3)),
}));
