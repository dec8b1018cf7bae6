// Ingest of the 40 Synthea sample bundles (../shared/fhir-data/synthea-r4, about 8,300
// resources), one transaction after another through POST /admin/fhir/bundle, on the built
// Worker under workerd (Miniflare API) with a fresh persisted state folder. Prints resources/s
// and workerd CPU per resource as a JSON line, and appends it to bench/results/ingest.jsonl.
//   node bench/ingest.mjs
import { appendFileSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startWorker, adminHeaders, ROOT } from "../tests/helpers/worker.mjs";
import { cpuMs, workerdPid } from "./process.mjs";

const dir = join(ROOT, "..", "shared", "fhir-data", "synthea-r4");
const bundles = readdirSync(dir).filter((f) => f.endsWith(".json")).sort().map((f) => readFileSync(join(dir, f), "utf8"));
const total = bundles.reduce((n, b) => n + JSON.parse(b).entry.length, 0);

const w = await startWorker();
try {
  const pid = workerdPid();
  const cpu0 = cpuMs(pid);
  const t0 = process.hrtime.bigint();
  for (const body of bundles) {
    const res = await fetch(`${w.url}/admin/fhir/bundle`, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body });
    if (!res.ok) throw new Error(`ingest ${res.status}: ${(await res.text()).slice(0, 500)}`);
    await res.arrayBuffer();
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const row = { date: new Date().toISOString(), case: "ingest 40 Synthea bundles", bundles: bundles.length, resources: total, per_s: Number(((total / wall) * 1000).toFixed(1)), cpu_ms_per_resource: Number(((cpuMs(pid) - cpu0) / total).toFixed(3)) };
  console.log(JSON.stringify(row));
  appendFileSync(join(ROOT, "bench", "results", "ingest.jsonl"), JSON.stringify(row) + "\n");
} finally {
  await w.dispose();
}
