// Where the CPU of a request goes inside workerd: a V8 CPU profile of the Worker's isolate
// (through workerd's inspector, which Miniflare exposes) while it serves one kind of request,
// summed by self time into buckets (WebCrypto, the wasm code by Rust crate, the JS glue, GC,
// SQLite `exec`, ...). The Durable Objects run in the same isolate, so their work is in the
// profile too; Miniflare's router in front of the Worker is not (the request floor).
//
//   node bench/profile.mjs [workload] [requests=2000] [interval-us=100] [--top]
//   workloads: client_credentials, refresh_token, fhir-read, fhir-search, fhir-create,
//              do-read (the bare Durable Object read bench/fhir.mjs uses as its ceiling)
//
// Prints one JSON line: sampled ms per request and the buckets' share; `--top` also lists the
// 25 hottest functions on stderr. The sampling itself costs CPU: compare runs, not absolutes.
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import * as jose from "jose";
import { startWorker } from "../tests/helpers/worker.mjs";
import { seed, APP } from "../tests/helpers/fixtures.mjs";
import { fhirCases } from "./fhir-cases.mjs";
import { authorize, exchange } from "../tests/helpers/flows.mjs";

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const WORKLOAD = args[0] ?? "client_credentials";
const N = Number(args[1] ?? 2000);
const INTERVAL_US = Number(args[2] ?? 100);
const TOP = process.argv.includes("--top");
const CONCURRENCY = 8;
const INSPECTOR = 9300 + Math.floor(Math.random() * 90);

const form = (params) => ({ method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params).toString() });
const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
const backendJwk = { ...(await jose.exportJWK(publicKey)), kid: "bench-1", alg: "ES256" };

const w = await startWorker({ miniflare: { inspectorPort: INSPECTOR } });
const fhirClient = { ...APP, client_id: "bench-fhir", scope: "launch/patient openid patient/*.cruds", consent: "pre-approved" };
await seed(w, {
  clients: [
    { ...APP, consent: "pre-approved" },
    fhirClient,
    { client_id: "bench-backend", client_name: "bench", client_type: "backend", scope: "system/Patient.rs", jwks: { keys: [backendJwk] } },
  ],
});
const tokenUrl = `${w.url}/auth/token`;

/** Each workload: `prepare(n)` → the n requests' inputs; `send(input)` → a Response. */
async function workload(name) {
  if (name === "client_credentials") {
    return {
      prepare: (n) => Promise.all(Array.from({ length: n }, () =>
        new jose.SignJWT({ iss: "bench-backend", sub: "bench-backend", aud: tokenUrl, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 280 })
          .setProtectedHeader({ alg: "ES256", kid: "bench-1" }).sign(privateKey))),
      send: (assertion) => fetch(tokenUrl, form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion, scope: "system/Patient.rs" })),
    };
  }
  if (name === "refresh_token") {
    // One chain per concurrent caller: each refresh rotates its chain's token.
    const chains = [];
    for (let i = 0; i < CONCURRENCY; i++) {
      const { code, verifier } = await authorize(w, { scope: "openid offline_access launch/patient patient/*.rs" });
      chains.push((await exchange(w, code, verifier)).body.refresh_token);
    }
    let turn = 0;
    return {
      prepare: (n) => Array.from({ length: n }, () => turn++ % CONCURRENCY),
      chained: true,
      send: async (chain) => {
        const res = await fetch(tokenUrl, form({ grant_type: "refresh_token", refresh_token: chains[chain] }));
        const body = await res.clone().json();
        if (res.status === 200) chains[chain] = body.refresh_token;
        return res;
      },
    };
  }
  const { code, verifier } = await authorize(w, { client_id: fhirClient.client_id, scope: "launch/patient openid patient/*.cruds" });
  const auth = { Authorization: `Bearer ${(await exchange(w, code, verifier, { client_id: fhirClient.client_id })).body.access_token}` };
  const cases = fhirCases(w, auth);
  const requests = {
    "do-read": cases["ceiling: bare DO point read"],
    "fhir-read": cases["read by id (Patient)"],
    "fhir-search": cases["patient-scoped Observation search"],
    "fhir-create": cases["create (Observation)"],
  };
  if (!requests[name]) throw new Error(`unknown workload ${name}`);
  return { prepare: (n) => Array.from({ length: n }), send: requests[name] };
}

const work = await workload(WORKLOAD);
/** Sends `n` requests of the workload, 8 at a time; throws on any failure. */
async function load(n) {
  const inputs = await work.prepare(n);
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async (_, lane) => {
    // A chained workload's lane keeps to its own chain.
    const mine = work.chained ? inputs.filter((c) => c === lane) : null;
    for (;;) {
      let input;
      if (mine) {
        if (!mine.length) return;
        input = mine.shift();
      } else {
        if (next >= inputs.length) return;
        input = inputs[next++];
      }
      const res = await work.send(input);
      await res.arrayBuffer();
      if (res.status >= 300) throw new Error(`${WORKLOAD}: ${res.status}`);
    }
  }));
}

// The Worker's isolate among the inspector's targets (Miniflare names it after the script).
const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR}/json`)).json();
const target = targets.find((t) => !/miniflare|loopback|entry/i.test(t.title ?? t.id)) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
let seq = 0;
const pending = new Map();
ws.on("message", (data) => {
  const msg = JSON.parse(data);
  if (msg.id && pending.has(msg.id)) { pending.get(msg.id)(msg); pending.delete(msg.id); }
});
const send = (method, params = {}) => new Promise((resolve) => { const id = ++seq; pending.set(id, resolve); ws.send(JSON.stringify({ id, method, params })); });

await load(Math.min(400, N)); // warm-up: JIT, caches, the objects exist
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
await send("Profiler.start");
await load(N);
const { result } = await send("Profiler.stop");
ws.close();
await w.dispose();

const { nodes, samples, timeDeltas } = result.profile;
const byId = new Map(nodes.map((n) => [n.id, n]));
const self = new Map();
samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (timeDeltas[i] ?? 0)));

/** A bucket for a function: what kind of work its self time is. */
function bucket(frame) {
  const name = frame.functionName || "(anonymous)";
  const url = frame.url || "";
  if (name === "(idle)") return null;
  if (name === "(garbage collector)") return "V8 garbage collector";
  if (name === "(program)") return "V8/workerd runtime (program)";
  if (/^(sign|verify|importKey|exportKey|digest|generateKey|deriveBits|getRandomValues)$/.test(name)) return `WebCrypto ${name}`;
  if (url.startsWith("wasm://") || /\.wasm/.test(url)) {
    const crate = /(?:^|[.<])(smart_protocol|platform|smart_edge_worker|serde_json|serde|worker|wasm_bindgen|js_sys|web_sys|alloc|core|std|dlmalloc|url|base64|futures\w*)(?:::|\[)/.exec(name);
    return `wasm: ${crate ? crate[1] : "other"}`;
  }
  if (/^(parse|stringify)$/.test(name)) return `JSON.${name}`;
  if (url) return "JS (glue, entry, runtime JS)";
  return `native: ${name}`;
}

const buckets = new Map();
const functions = new Map();
let total = 0;
for (const [id, us] of self) {
  const frame = byId.get(id).callFrame;
  const b = bucket(frame);
  if (!b) continue;
  total += us;
  buckets.set(b, (buckets.get(b) ?? 0) + us);
  const key = `${frame.functionName || "(anonymous)"} ${frame.url ? frame.url.slice(-40) : ""}`;
  functions.set(key, (functions.get(key) ?? 0) + us);
}
const perRequest = (us) => Number((us / 1000 / N).toFixed(4));
const out = {
  bench: "profile", workload: WORKLOAD, requests: N, interval_us: INTERVAL_US,
  sampled_ms_per_request: perRequest(total),
  buckets: Object.fromEntries([...buckets].sort((a, b) => b[1] - a[1]).map(([k, us]) => [k, { ms: perRequest(us), share: Number((us / total).toFixed(3)) }])),
};
console.log(JSON.stringify(out));
if (TOP) {
  // Who calls the nameless native frames (their parents' self time is elsewhere).
  const parent = new Map();
  for (const n of nodes) for (const c of n.children ?? []) parent.set(c, n);
  const callers = new Map();
  for (const [id, us] of self) {
    const frame = byId.get(id).callFrame;
    if (frame.functionName || frame.url) continue;
    const p = parent.get(id)?.callFrame;
    const key = `(anonymous) ← ${p?.functionName || "(anonymous)"} ${p?.url ? p.url.slice(-30) : ""}`;
    callers.set(key, (callers.get(key) ?? 0) + us);
  }
  for (const [k, us] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.error(`${perRequest(us).toFixed(4)} ms/request  ${k}`);
  for (const [k, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.error(`${perRequest(us).toFixed(4)} ms/request  ${k}`);
}
