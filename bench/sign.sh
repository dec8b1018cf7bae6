#!/usr/bin/env bash
# Signing cost, side by side in one run: RS256 and ES256 inside workerd (WebCrypto) next to
# the same signatures in native Rust, and OpenSSL's own speed test as the native ceiling. Needs a built Worker (npm run build). Writes
# bench/results/sign.jsonl and prints a table with the workerd / native ratio.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
mkdir -p bench/results
cargo build --quiet --profile bench-native -p native-sign
out=bench/results/sign.jsonl
{
  node bench/sign-workerd.mjs "${N:-1000}" "${ROUNDS:-7}"
  ./target/bench-native/native-sign "${NATIVE_N:-300}"
  # `openssl speed -mr` prints +F2:i:bits:signs/s:verifies/s (RSA) and +F4:… (ECDSA).
  openssl speed -seconds 3 -mr rsa2048 ecdsap256 2>/dev/null | awk -F: -v v="$(openssl version | cut -d" " -f1-2)" '
    $1=="+F2" && $3==2048 { printf "{\"runtime\":\"native C (%s)\",\"alg\":\"RS256\",\"us_per_signature\":%.1f}\n", v, 1e6/$4 }
    $1=="+F4" && $3==256  { printf "{\"runtime\":\"native C (%s)\",\"alg\":\"ES256\",\"us_per_signature\":%.1f}\n", v, 1e6/$4 }'
  # Node's PBKDF2 (OpenSSL) for the password hash.
  node -e 'const c=require("crypto");c.pbkdf2Sync("x","s",100000,32,"sha256");const n=10,t=process.hrtime.bigint();for(let i=0;i<n;i++)c.pbkdf2Sync("correct horse battery staple","0123456789abcdef",100000,32,"sha256");console.log(JSON.stringify({runtime:"native C (Node "+process.version+" OpenSSL)",alg:"PBKDF2",us_per_signature:Number((Number(process.hrtime.bigint()-t)/1e3/n).toFixed(1)),n}))'
} | tee "$out.tmp"
mv "$out.tmp" "$out"
node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
for (const alg of ["RS256", "ES256", "PBKDF2"]) {
  const w = rows.find((r) => r.alg === alg && r.runtime.startsWith("workerd"));
  const n = rows.find((r) => r.alg === alg && r.runtime.startsWith("native Rust"));
  const c = rows.find((r) => r.alg === alg && r.runtime.startsWith("native C"));
  const ratio = (a, b) => (a.us_per_signature / b.us_per_signature).toFixed(2);
  console.log(`${alg}: workerd ${w.us_per_signature} µs | native Rust ${n.us_per_signature} µs (workerd/Rust ${ratio(w, n)}) | OpenSSL ${c ? c.us_per_signature + " µs (workerd/OpenSSL " + ratio(w, c) + ")" : "n/a"}`);
}' "$out"
