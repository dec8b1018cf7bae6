// Code bytes of a wasm file by function and by crate, from its name section (build with
// symbol names, e.g. target/wasm32-unknown-unknown/sdk/smart_edge_sdk.wasm before wasm-opt).
//   node bench/wasm-sizes.mjs <file.wasm>
import { readFileSync } from "node:fs";
const buf = readFileSync(process.argv[2]);
let p = 8;
const u = () => { let r = 0, s = 0, b; do { b = buf[p++]; r |= (b & 0x7f) << s; s += 7; } while (b & 0x80); return r >>> 0; };
let imports = 0, codeSizes = [], names = new Map();
while (p < buf.length) {
  const id = buf[p++]; const size = u(); const end = p + size;
  if (id === 2) { const n = u(); /* count imported funcs */ for (let i = 0; i < n; i++) { let l = u(); p += l; l = u(); p += l; const kind = buf[p++]; if (kind === 0) { u(); imports++; } else if (kind === 1) { p++; const f = u(); u(); if (f & 1) u(); } else if (kind === 2) { const f = u(); u(); if (f & 1) u(); } else if (kind === 3) { p += 2; } else { p++; u(); } } }
  if (id === 10) { const n = u(); for (let i = 0; i < n; i++) { const s = u(); codeSizes.push(s); p += s; } }
  if (id === 0) { const l = u(); const name = buf.slice(p, p + l).toString(); p += l; if (name === "name") { while (p < end) { const sub = buf[p++]; const ss = u(); const se = p + ss; if (sub === 1) { const n = u(); for (let i = 0; i < n; i++) { const idx = u(); const nl = u(); names.set(idx, buf.slice(p, p + nl).toString()); p += nl; } } p = se; } } }
  p = end;
}
const rows = codeSizes.map((s, i) => [s, names.get(i + imports) ?? `#${i + imports}`]);
rows.sort((a, b) => b[0] - a[0]);
const total = codeSizes.reduce((a, b) => a + b, 0);
console.log("total code", total, "functions", codeSizes.length);
const crate = new Map();
for (const [s, n] of rows) { const m = n.match(/^_?Z?N?\d*([a-z_][a-z0-9_]*)/) ; const k = (n.match(/(?:^|[<( ])([a-z_][a-z0-9_]+)::/) ?? [,"?"])[1]; crate.set(k, (crate.get(k) ?? 0) + s); }
console.log([...crate].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => `${v}\t${k}`).join("\n"));
console.log(rows.slice(0, 30).map(([s, n]) => `${s}\t${n.slice(0, 140)}`).join("\n"));
const keys = ["serde_json","serde_core","serde","js_sys","wasm_bindgen_futures","wasm_bindgen","web_sys","smart_edge_sdk","smart_protocol","dlmalloc","base64","sha2","form_urlencoded","percent_encoding","flt2dec","fmt","core","alloc","std","zmij"];
const agg = new Map();
for (const [s, n] of rows) { const k = keys.find((k) => n.includes(k)) ?? "other"; agg.set(k, (agg.get(k) ?? 0) + s); }
console.log("BY CRATE\n" + [...agg].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v}\t${k}`).join("\n"));
