// Starts the built Worker (worker/build) under workerd through the Miniflare API, on a real
// loopback port, with the same bindings wrangler.toml declares. Tests talk to it over HTTP.
import { Miniflare } from "miniflare";
import { parse as parseToml } from "smol-toml";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const ADMIN_TOKEN = "test-admin-token";

// The bindings come from wrangler.toml itself, so tests and `wrangler dev` cannot drift apart.
const config = parseToml(readFileSync(join(ROOT, "wrangler.toml"), "utf8"));
const durableObjects = Object.fromEntries(
  config.durable_objects.bindings.map((b) => [b.name, { className: b.class_name, useSQLite: true }]),
);
const kvNamespaces = config.kv_namespaces.map((kv) => kv.binding);

/**
 * wrangler.toml's [[ratelimits]] as Miniflare's `ratelimits` option, each binding's `simple`
 * replaced by `override(name, simple)` when given (tests shorten limits and periods).
 */
export function wranglerRatelimits(override = (_name, simple) => simple) {
  return Object.fromEntries((config.ratelimits ?? []).map((r) => [r.name, { simple: override(r.name, r.simple) }]));
}

export function tempDir(prefix = "smart-edge-") {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * @param {{persistTo?: string, bindings?: Record<string,string>, miniflare?: object, worker?: object, workers?: object[]}} options
 *   persistTo: a folder for KV and Durable Object state (a fresh temporary one by default).
 *   miniflare: more Miniflare options for the whole instance (e.g. `handleRuntimeStdio`, or
 *   `inspectorPort` for a CPU profile).
 *   worker: more options for the smart-edge Worker (e.g. `ratelimits`, `analyticsEngineDatasets`,
 *   `wrappedBindings`); by default it runs without rate limits or datasets.
 *   workers: other Workers to run beside it (e.g. the module of a wrapped binding).
 */
export async function startWorker({ persistTo = tempDir(), bindings = {}, miniflare = {}, worker = {}, workers = [] } = {}) {
  const buildDir = join(ROOT, "worker", "build");
  const main = {
    modules: true,
    scriptPath: join(buildDir, "index.js"),
    modulesRoot: buildDir,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: config.compatibility_date,
    kvNamespaces,
    durableObjects,
    bindings: { FHIR_BASE_PATH: "/fhir", DEV_ROUTES: "true", ADMIN_TOKEN, ...bindings },
    ...worker,
  };
  const shared = { host: "127.0.0.1", port: 0, defaultPersistRoot: persistTo, ...miniflare };
  const mf = new Miniflare(workers.length ? { ...shared, workers: [{ name: config.name, ...main }, ...workers] } : { ...shared, ...main });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return {
    mf,
    url,
    persistTo,
    fetch: (path, init) => fetch(url + path, init),
    json: async (path, init) => {
      const res = await fetch(url + path, init);
      return { res, body: await res.json() };
    },
    dispose: () => mf.dispose(),
  };
}

export function adminHeaders(extra = {}) {
  return { Authorization: `Bearer ${ADMIN_TOKEN}`, ...extra };
}
