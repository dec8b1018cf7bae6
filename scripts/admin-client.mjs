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

/** Loads every *.json Bundle of `folder`, printing one progress line per file. */
export async function loadFolder(url, token, folder, { log = console.log } = {}) {
  const files = readdirSync(folder).filter((f) => f.endsWith(".json")).sort();
  let stored = 0;
  for (const [i, file] of files.entries()) {
    const body = readFileSync(join(folder, file), "utf8");
    const result = await call(url, token, "POST", "/admin/fhir/bundle", body);
    stored += result.stored;
    log(`  [${i + 1}/${files.length}] ${file}: ${result.stored} resources`);
  }
  return { files: files.length, stored };
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
