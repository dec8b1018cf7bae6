// A small client of the admin API and the FHIR API, for `npm start` and the command line:
//   node scripts/admin-client.mjs <url> clients <file.json>   register clients from a JSON array
//   node scripts/admin-client.mjs <url> users <file.json>     register users from a JSON array
//   node scripts/admin-client.mjs <url> load <folder>         load FHIR Bundles / NDJSON files
// The admin token comes from $ADMIN_TOKEN, or from .dev.vars. Data goes through the FHIR API
// (`POST [base]` transactions and batches) as a SMART backend service: the loader registers a
// `data-loader` backend client with its own key (kept in .state/data-loader-key.json) and gets
// `system/*.cruds` tokens with private_key_jwt.
import { readFileSync, readdirSync, existsSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";
import { parseEnv } from "node:util";
import * as jose from "jose";

const ROOT = join(fileURLToPath(import.meta.url), "..", "..");

export function localAdminToken(root) {
  if (process.env.ADMIN_TOKEN) return process.env.ADMIN_TOKEN;
  const file = join(root, ".dev.vars");
  if (!existsSync(file)) return undefined;
  // dotenv syntax, read by Node's own parser (as wrangler reads the file).
  return parseEnv(readFileSync(file, "utf8")).ADMIN_TOKEN || undefined;
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

/** A `system/*.cruds` access token for the data loader (registering it first if needed). */
export async function loaderToken(url, adminToken) {
  const keyFile = join(ROOT, ".state", "data-loader-key.json");
  let key;
  if (existsSync(keyFile)) {
    key = JSON.parse(readFileSync(keyFile, "utf8"));
  } else {
    const { privateKey, publicKey } = await jose.generateKeyPair("ES384", { extractable: true });
    key = { private: { ...(await jose.exportJWK(privateKey)), alg: "ES384", kid: "loader-1" }, public: { ...(await jose.exportJWK(publicKey)), alg: "ES384", kid: "loader-1" } };
    mkdirSync(join(ROOT, ".state"), { recursive: true });
    writeFileSync(keyFile, JSON.stringify(key), { mode: 0o600 });
  }
  await call(url, adminToken, "POST", "/admin/clients", {
    client_id: "data-loader", client_name: "smart-edge data loader", client_type: "backend",
    scope: "system/*.cruds", jwks: { keys: [key.public] },
  });
  const tokenUrl = `${url}/auth/token`;
  const assertion = await new jose.SignJWT({ iss: "data-loader", sub: "data-loader", aud: tokenUrl, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 240 })
    .setProtectedHeader({ alg: "ES384", kid: "loader-1" })
    .sign(await jose.importJWK(key.private, "ES384"));
  const res = await fetch(tokenUrl, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", scope: "system/*.cruds", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`data-loader token: ${res.status} ${JSON.stringify(body)}`);
  return { token: body.access_token, expiresAt: Date.now() + (body.expires_in - 30) * 1000 };
}

/**
 * Loads every `*.json` Bundle (transaction or batch) and every `*.ndjson` file (one resource
 * per line, each with an id; sent as PUT batches of 500) of `folder` through the FHIR API,
 * printing one progress line per file.
 */
export async function loadFolder(url, adminToken, folder, { log = console.log, fhirBase = "/fhir" } = {}) {
  const files = readdirSync(folder).filter((f) => f.endsWith(".json") || f.endsWith(".ndjson")).sort();
  let stored = 0;
  let access = await loaderToken(url, adminToken);
  for (const [i, file] of files.entries()) {
    const text = readFileSync(join(folder, file), "utf8");
    const bodies = file.endsWith(".ndjson") ? ndjsonBatches(text) : [text];
    let count = 0;
    for (const body of bodies) {
      if (Date.now() > access.expiresAt) access = await loaderToken(url, adminToken);
      const res = await fetch(`${url}${fhirBase}`, { method: "POST", headers: { Authorization: `Bearer ${access.token}`, "Content-Type": "application/fhir+json" }, body });
      const answer = await res.json();
      if (!res.ok) throw new Error(`${file}: ${res.status} ${JSON.stringify(answer).slice(0, 500)}`);
      count += answer.entry.filter((e) => /^20[01]/.test(e.response.status)).length;
    }
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
  const token = localAdminToken(ROOT);
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
