// FHIR API throughput and CPU per request on workerd, side by side in one run with a ceiling:
// a bare Durable Object point read through the same Worker (no token, no decision, no index).
//   - read by id: GET /fhir/Patient/{id} (patient/ token: guard + decision + one partition read)
//   - search: GET /fhir/Observation?code=…&_sort=-date (patient-scoped, one partition), and what a
//     lab viewer sends: category=laboratory&_sort=-date, a date window (50 per page)
//   - create: POST /fhir/Observation (validation, version, index rows, directory entry)
//   - ingest: POST /admin/fhir/bundle with the Synthea fixture bundles (resources per second)
// The built Worker runs under workerd through the Miniflare API; CPU is workerd's process
// user+system time from /proc. Rounds alternate; medians are printed as JSON lines.
//   node bench/fhir.mjs [requests-per-round=300] [rounds=3] [concurrency=8]
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startWorker, adminHeaders, ROOT } from "../tests/helpers/worker.mjs";
import { seed, APP } from "../tests/helpers/fixtures.mjs";
import { fhirCases } from "./fhir-cases.mjs";
import { authorize, exchange } from "../tests/helpers/flows.mjs";
import { cpuMs, workerdPid } from "./process.mjs";

const N = Number(process.argv[2] ?? 300);
const ROUNDS = Number(process.argv[3] ?? 3);
const CONCURRENCY = Number(process.argv[4] ?? 8);

const w = await startWorker();
const client = { ...APP, client_id: "bench-fhir", scope: "launch/patient openid patient/*.cruds", consent: "pre-approved" };
await seed(w, { clients: [client] });
const { code, verifier } = await authorize(w, { client_id: client.client_id, scope: "launch/patient openid patient/*.cruds" });
const token = (await exchange(w, code, verifier, { client_id: client.client_id })).body.access_token;
const auth = { Authorization: `Bearer ${token}` };
const pid = workerdPid();
const fixtures = join(ROOT, "tests", "fixtures", "synthea");
const bundles = readdirSync(fixtures).filter((f) => f.endsWith(".json")).map((f) => readFileSync(join(fixtures, f), "utf8"));
const bundleResources = bundles.map((b) => JSON.parse(b).entry.length);

const cases = fhirCases(w, auth);

async function measure(fn, n, concurrency) {
  const cpu0 = cpuMs(pid);
  const t0 = process.hrtime.bigint();
  let next = 0;
  let failures = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      next++;
      const res = await fn();
      await res.arrayBuffer();
      if (res.status >= 300) failures++;
    }
  }));
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (failures) throw new Error(`${failures} failed`);
  return { per_s: (n / wall) * 1000, cpu_ms: (cpuMs(pid) - cpu0) / n };
}

const results = {};
try {
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, fn] of Object.entries(cases)) {
      const r = await measure(fn, N, CONCURRENCY);
      if (round > 0) (results[name] ??= []).push(r);
    }
    // Ingest: the three fixture bundles, one after another (each is one transaction).
    const cpu0 = cpuMs(pid);
    const t0 = process.hrtime.bigint();
    for (const b of bundles) {
      const res = await fetch(`${w.url}/admin/fhir/bundle`, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: b });
      if (!res.ok) throw new Error(`ingest ${res.status}`);
      await res.arrayBuffer();
    }
    const wall = Number(process.hrtime.bigint() - t0) / 1e6;
    const total = bundleResources.reduce((a, b) => a + b, 0);
    if (round > 0) (results["transaction ingest (resources)"] ??= []).push({ per_s: (total / wall) * 1000, cpu_ms: (cpuMs(pid) - cpu0) / total });
  }
} finally {
  await w.dispose();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ceiling = median(results["ceiling: bare DO point read"].map((r) => r.per_s));
for (const [name, rows] of Object.entries(results)) {
  const perS = median(rows.map((r) => r.per_s));
  console.log(JSON.stringify({ case: name, per_s: Number(perS.toFixed(1)), cpu_ms: Number(median(rows.map((r) => r.cpu_ms)).toFixed(3)), vs_ceiling: Number((perS / ceiling).toFixed(2)), rounds: rows.length, concurrency: name.includes("ingest") ? 1 : CONCURRENCY }));
}
