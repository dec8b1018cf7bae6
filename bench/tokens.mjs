// Token endpoint throughput and CPU per token, side by side in one run: smart-edge (the built
// Worker under workerd through the Miniflare API, KV + Durable Objects persisted to a temp
// folder) and node-oidc-provider (bench/peer-oidc-provider.mjs, its own Node process,
// in-memory storage), doing the same work:
//   - client_credentials with an ES256 private_key_jwt assertion → ES256 JWT access token;
//   - refresh_token with rotation → ES256 JWT access token + RS256 ID token + new refresh token.
// Assertions are signed before the clock starts. CPU is the server process's user+system time
// from /proc (workerd's whole process; the peer's Node process), divided by tokens issued.
// Rounds alternate A B A B; medians and the per-round ratio are printed as JSON lines.
//
//   node bench/tokens.mjs [tokens-per-round=400] [rounds=3] [concurrency=8]
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as jose from "jose";
import { startWorker } from "../tests/helpers/worker.mjs";
import { seed, APP } from "../tests/helpers/fixtures.mjs";
import { authorize, exchange } from "../tests/helpers/flows.mjs";
import { cpuMs, workerdPid } from "./process.mjs";

const N = Number(process.argv[2] ?? 400);
const ROUNDS = Number(process.argv[3] ?? 3);
const CONCURRENCY = Number(process.argv[4] ?? 8);
const form = (params) => ({ method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params).toString() });

async function runPool(items, worker) {
  let next = 0;
  let failures = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) {
      const item = items[next++];
      if (!(await worker(item))) failures++;
    }
  }));
  return failures;
}

async function measure(pid, fn) {
  const cpu0 = cpuMs(pid);
  const t0 = process.hrtime.bigint();
  const { tokens, failures } = await fn();
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = cpuMs(pid) - cpu0;
  if (failures) throw new Error(`${failures} requests failed`);
  return { tokens_per_s: (tokens / wallMs) * 1000, cpu_ms_per_token: cpu / tokens };
}

// One ES256 key for the backend client on both servers.
const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
const backendJwk = { ...(await jose.exportJWK(publicKey)), kid: "bench-1", alg: "ES256" };
const sign = (clientId, aud) =>
  new jose.SignJWT({ iss: clientId, sub: clientId, aud, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 280 })
    .setProtectedHeader({ alg: "ES256", kid: "bench-1" })
    .sign(privateKey);

// smart-edge
const w = await startWorker();
await seed(w, {
  clients: [
    { ...APP, consent: "pre-approved" },
    { client_id: "bench-backend", client_name: "bench", client_type: "backend", scope: "system/Patient.rs system/Observation.rs", jwks: { keys: [backendJwk] } },
  ],
});
const edgePid = workerdPid();
const edgeRefresh = [];
for (let i = 0; i < CONCURRENCY; i++) {
  const { code, verifier, agent } = await authorize(w, { scope: "openid offline_access launch/patient patient/*.rs" });
  edgeRefresh.push((await exchange(w, code, verifier)).body.refresh_token);
  void agent;
}

// node-oidc-provider
const port = 9900 + Math.floor(Math.random() * 90);
const peer = spawn(process.execPath, ["bench/peer-oidc-provider.mjs", String(port), JSON.stringify({ backendJwks: { keys: [backendJwk] }, refreshChains: CONCURRENCY })], { stdio: ["ignore", "pipe", "inherit"] });
const peerInfo = await new Promise((resolve, reject) => {
  let out = "";
  peer.stdout.on("data", (d) => { out += d; const m = /READY (.*)\n/.exec(out); if (m) resolve(JSON.parse(m[1])); });
  peer.on("exit", (code) => reject(new Error(`peer exited ${code}`)));
});
const peerRefresh = [...peerInfo.refresh_tokens];

const servers = {
  "smart-edge (workerd)": {
    pid: edgePid,
    tokenUrl: `${w.url}/auth/token`,
    cc: (assertion) => form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion, scope: "system/Patient.rs" }),
    refresh: (token) => form({ grant_type: "refresh_token", refresh_token: token }),
    chains: edgeRefresh,
  },
  "node-oidc-provider 9 (Node 20)": {
    pid: peer.pid,
    tokenUrl: peerInfo.token_endpoint,
    cc: (assertion) => form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion, scope: "system/Patient.rs" }),
    refresh: (token) => form({ grant_type: "refresh_token", refresh_token: token, client_id: "bench-app" }),
    chains: peerRefresh,
  },
};

const results = {};
const floor = [];
try {
  for (let round = 0; round < ROUNDS + 1; round++) {
    for (const [name, s] of Object.entries(servers)) {
      const assertions = await Promise.all(Array.from({ length: N }, () => sign(s.tokenUrl.includes("/auth/token") ? "bench-backend" : "bench-backend", s.tokenUrl)));
      const cc = await measure(s.pid, async () => ({
        tokens: N,
        failures: await runPool(assertions, async (a) => {
          const res = await fetch(s.tokenUrl, s.cc(a));
          await res.arrayBuffer();
          return res.status === 200;
        }),
      }));
      const perChain = Math.ceil(N / CONCURRENCY);
      const rt = await measure(s.pid, async () => {
        let failures = 0;
        await Promise.all(s.chains.map(async (_, i) => {
          for (let k = 0; k < perChain; k++) {
            const res = await fetch(s.tokenUrl, s.refresh(s.chains[i]));
            const body = await res.json();
            if (res.status !== 200) { failures++; return; }
            s.chains[i] = body.refresh_token;
          }
        }));
        return { tokens: perChain * s.chains.length, failures };
      });
      if (name.startsWith("smart-edge")) {
        // The floor: a request that does no work (/health) through the same stack.
        const health = await measure(s.pid, async () => ({
          tokens: N,
          failures: await runPool(Array.from({ length: N }), async () => {
            const res = await fetch(`${w.url}/health`);
            await res.arrayBuffer();
            return res.status === 200;
          }),
        }));
        if (round > 0) floor.push(health);
      }
      if (round === 0) continue; // warm-up round
      (results[name] ??= { cc: [], rt: [] });
      results[name].cc.push(cc);
      results[name].rt.push(rt);
    }
  }
} finally {
  peer.kill();
  await w.dispose();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(JSON.stringify({ server: "smart-edge (workerd)", grant: "GET /health (floor: no work)", requests_per_s: Number(median(floor.map((r) => r.tokens_per_s)).toFixed(1)), cpu_ms_per_request: Number(median(floor.map((r) => r.cpu_ms_per_token)).toFixed(3)), rounds: floor.length }));
const [edge, node] = Object.keys(results);
for (const grant of ["cc", "rt"]) {
  const label = grant === "cc" ? "client_credentials" : "refresh_token";
  for (const name of [edge, node]) {
    const rows = results[name][grant];
    console.log(JSON.stringify({ server: name, grant: label, tokens_per_s: Number(median(rows.map((r) => r.tokens_per_s)).toFixed(1)), cpu_ms_per_token: Number(median(rows.map((r) => r.cpu_ms_per_token)).toFixed(3)), rounds: rows.length, tokens_per_round: N, concurrency: CONCURRENCY }));
  }
  const ratios = results[edge][grant].map((r, i) => r.tokens_per_s / results[node][grant][i].tokens_per_s);
  const cpuRatios = results[edge][grant].map((r, i) => r.cpu_ms_per_token / results[node][grant][i].cpu_ms_per_token);
  console.log(JSON.stringify({ grant: label, throughput_ratio_edge_over_node: Number(median(ratios).toFixed(2)), cpu_per_token_ratio_edge_over_node: Number(median(cpuRatios).toFixed(2)) }));
}
