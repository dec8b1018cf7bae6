// A small client of the admin API, for `npm start`, the data loader and the CLI:
//   node scripts/admin-client.mjs <url> clients <file.json>   register clients from a JSON array
//   node scripts/admin-client.mjs <url> users <file.json>     register users from a JSON array
//   node scripts/admin-client.mjs <url> load <folder>         load FHIR transaction Bundles
// The admin token comes from $ADMIN_TOKEN, or from .dev.vars.
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export function localAdminToken(root) {
  if (process.env.ADMIN_TOKEN) return process.env.ADMIN_TOKEN;
  const file = join(root, ".dev.vars");
  if (!existsSync(file)) return undefined;
  return /^ADMIN_TOKEN=(.*)$/m.exec(readFileSync(file, "utf8"))?.[1]?.trim();
}

async function call(url, token, method, path, body) {
  const res = await fetch(url + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

export async function registerAll(url, token, kind, items) {
  for (const item of items) await call(url, token, "POST", `/admin/${kind}`, item);
  return items.length;
}

/**
 * Loads every `*.json` Bundle (transaction or batch) and every `*.ndjson` file (one resource
 * per line, each with an id; sent as PUT batches of 500) of `folder`, printing one progress
 * line per file.
 */
export async function loadFolder(url, token, folder, { log = console.log } = {}) {
  const files = readdirSync(folder).filter((f) => f.endsWith(".json") || f.endsWith(".ndjson")).sort();
  let stored = 0;
  for (const [i, file] of files.entries()) {
    const text = readFileSync(join(folder, file), "utf8");
    const bodies = file.endsWith(".ndjson") ? ndjsonBatches(text) : [text];
    let count = 0;
    for (const body of bodies) count += (await call(url, token, "POST", "/admin/fhir/bundle", body)).stored;
    stored += count;
    log(`  [${i + 1}/${files.length}] ${file}: ${count} resources`);
  }
  return { files: files.length, stored };
}

function ndjsonBatches(text, size = 500) {
  const resources = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  const batches = [];
  for (let i = 0; i < resources.length; i += size) {
    const entry = resources.slice(i, i + size).map((r) => ({ resource: r, request: { method: "PUT", url: `${r.resourceType}/${r.id}` } }));
    batches.push(JSON.stringify({ resourceType: "Bundle", type: "batch", entry }));
  }
  return batches;
}

/** How many patients the server holds. */
export async function patientCount(url, token) {
  const res = await fetch(`${url}/admin/fhir/status`, { headers: { Authorization: `Bearer ${token}` } });
  return res.ok ? (await res.json()).patients : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [url, what, arg] = process.argv.slice(2);
  const token = localAdminToken(join(fileURLToPath(import.meta.url), "..", ".."));
  if (!url || !what || !arg || !token) {
    console.error("usage: ADMIN_TOKEN=… node scripts/admin-client.mjs <url> clients|users <file.json> | load <folder>");
    process.exit(2);
  }
  if (what === "load") {
    const { files, stored } = await loadFolder(url.replace(/\/$/, ""), token, arg);
    console.log(`loaded ${stored} resources from ${files} bundles`);
  } else {
    const n = await registerAll(url.replace(/\/$/, ""), token, what, JSON.parse(readFileSync(arg, "utf8")));
    console.log(`registered ${n} ${what}`);
  }
}
