// GET /fhir/metadata (the CapabilityStatement every app launch asks for) next to the request
// floor (GET /health) in the same run: workerd CPU per request from /proc, sequential requests.
//   node bench/metadata.mjs [requests=200]
import { startWorker } from "../tests/helpers/worker.mjs";
import { cpuMs, workerdPid } from "./process.mjs";

const N = Number(process.argv[2] ?? 200);
const w = await startWorker();
const pid = workerdPid();
try {
  for (let i = 0; i < 20; i++) await (await fetch(`${w.url}/fhir/metadata`)).arrayBuffer();
  for (const path of ["/health", "/fhir/metadata"]) {
    const cpu0 = cpuMs(pid);
    const t0 = process.hrtime.bigint();
    let bytes = 0;
    for (let i = 0; i < N; i++) bytes = (await (await fetch(`${w.url}${path}`)).arrayBuffer()).byteLength;
    const wall = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(JSON.stringify({ path, cpu_ms: Number(((cpuMs(pid) - cpu0) / N).toFixed(2)), wall_ms: Number((wall / N).toFixed(2)), bytes }));
  }
} finally {
  await w.dispose();
}
