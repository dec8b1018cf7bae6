// CPU cost of one RS256 and one ES256 signature, and of one login's PBKDF2, inside workerd
// (the built Worker through the Miniflare API; WebCrypto; keys imported once per isolate).
//
// Method: POST /_dev/sign?alg=X&n=N signs the same claims N times inside one request. Time in
// workerd only advances across I/O, so it is measured from outside: the wall time of a request
// with N signatures minus one with 0, divided by N. The request is CPU-bound and workerd runs
// it on one thread, so that is CPU time per signature. Prints one JSON line per algorithm.
import { startWorker } from "../tests/helpers/worker.mjs";

const N = Number(process.argv[2] ?? 1000);
const ROUNDS = Number(process.argv[3] ?? 7);
const claims = JSON.stringify({ iss: "https://ehr.example.org", sub: "Practitioner/1", aud: "https://ehr.example.org/fhir",
  scope: "launch openid fhirUser patient/*.rs", exp: 2000000000, iat: 1700000000, jti: "a".repeat(22) });

const w = await startWorker();
async function timed(alg, n) {
  const start = process.hrtime.bigint();
  const path = alg === "PBKDF2" ? `/_dev/pbkdf2?n=${n}` : `/_dev/sign?alg=${alg}&n=${n}`;
  const res = await w.fetch(path, { method: "POST", body: claims });
  if (!res.ok) throw new Error(`${alg}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
  return Number(process.hrtime.bigint() - start) / 1e3; // µs
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  for (const alg of ["RS256", "ES256", "PBKDF2"]) {
    const n = alg === "PBKDF2" ? 10 : N;
    await timed(alg, alg === "PBKDF2" ? 2 : 50); // warm-up: key import, JIT
    const perSig = [];
    for (let i = 0; i < ROUNDS; i++) {
      const base = await timed(alg, 0);
      const full = await timed(alg, n);
      perSig.push((full - base) / n);
    }
    console.log(JSON.stringify({ runtime: "workerd (WebCrypto)", alg, us_per_signature: Number(median(perSig).toFixed(1)),
      min: Number(Math.min(...perSig).toFixed(1)), max: Number(Math.max(...perSig).toFixed(1)), n, rounds: ROUNDS }));
  }
} finally {
  await w.dispose();
}
