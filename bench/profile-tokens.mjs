// Where the CPU of one token goes inside workerd: a V8 CPU profile of the Worker's isolate
// (through workerd's inspector, which Miniflare exposes) while it issues tokens, summed by
// self time into buckets (WebCrypto, the wasm code by Rust crate, the JS glue, GC, ...).
// The Durable Objects run in the same isolate, so their work is in the profile too; the
// Miniflare router in front of the Worker is not (it is the request floor, GET /health).
//
//   node bench/profile-tokens.mjs [grant=client_credentials|refresh_token] [tokens=2000] [interval-us=50]
//
// Prints one JSON line: total sampled ms per token and the buckets' share; `--top` also lists
// the 25 hottest functions.
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import * as jose from "jose";
import { startWorker } from "../tests/helpers/worker.mjs";
import { seed, APP } from "../tests/helpers/fixtures.mjs";
import { authorize, exchange } from "../tests/helpers/flows.mjs";

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const GRANT = args[0] ?? "client_credentials";
const N = Number(args[1] ?? 2000);
const INTERVAL_US = Number(args[2] ?? 50);
const TOP = process.argv.includes("--top");
const CONCURRENCY = 8;
const INSPECTOR = 9300 + Math.floor(Math.random() * 90);

const form = (params) => ({ method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params).toString() });
const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
const backendJwk = { ...(await jose.exportJWK(publicKey)), kid: "bench-1", alg: "ES256" };

const w = await startWorker({ miniflare: { inspectorPort: INSPECTOR } });
await seed(w, {
  clients: [
    { ...APP, consent: "pre-approved" },
    { client_id: "bench-backend", client_name: "bench", client_type: "backend", scope: "system/Patient.rs", jwks: { keys: [backendJwk] } },
  ],
});
const tokenUrl = `${w.url}/auth/token`;
const chains = [];
if (GRANT === "refresh_token") {
  for (let i = 0; i < CONCURRENCY; i++) {
    const { code, verifier } = await authorize(w, { scope: "openid offline_access launch/patient patient/*.rs" });
    chains.push((await exchange(w, code, verifier)).body.refresh_token);
  }
}

/** Issues `n` tokens of the grant, 8 at a time; throws on any failure. */
async function load(n) {
  if (GRANT === "client_credentials") {
    const assertions = await Promise.all(Array.from({ length: n }, () =>
      new jose.SignJWT({ iss: "bench-backend", sub: "bench-backend", aud: tokenUrl, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 280 })
        .setProtectedHeader({ alg: "ES256", kid: "bench-1" }).sign(privateKey)));
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < assertions.length) {
        const res = await fetch(tokenUrl, form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertions[next++], scope: "system/Patient.rs" }));
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`token: ${res.status}`);
      }
    }));
  } else {
    await Promise.all(chains.map(async (_, i) => {
      for (let k = 0; k < Math.ceil(n / chains.length); k++) {
        const res = await fetch(tokenUrl, form({ grant_type: "refresh_token", refresh_token: chains[i] }));
        const body = await res.json();
        if (res.status !== 200) throw new Error(`refresh: ${res.status} ${JSON.stringify(body)}`);
        chains[i] = body.refresh_token;
      }
    }));
  }
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
const perToken = (us) => Number((us / 1000 / N).toFixed(4));
const out = {
  bench: "profile-tokens", grant: GRANT, tokens: N, interval_us: INTERVAL_US,
  sampled_ms_per_token: perToken(total),
  buckets: Object.fromEntries([...buckets].sort((a, b) => b[1] - a[1]).map(([k, us]) => [k, { ms_per_token: perToken(us), share: Number((us / total).toFixed(3)) }])),
};
console.log(JSON.stringify(out));
if (TOP) {
  for (const [k, us] of [...functions].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.error(`${perToken(us).toFixed(4)} ms/token  ${k}`);
}
