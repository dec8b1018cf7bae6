// `npm start`, after bootstrap and build: runs the Worker under wrangler dev on
// 127.0.0.1:8787 with state persisted in .state/, seeds the local configuration and prints
// where to go.
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { startDevServer, ROOT } from "./dev-server.mjs";
import { registerAll, loadFolder, patientCount } from "./admin-client.mjs";
import { parseEnv } from "node:util";

const port = Number(process.env.PORT ?? 8787);
const stateDir = join(ROOT, ".state");
const envFile = join(ROOT, ".dev.vars");
mkdirSync(stateDir, { recursive: true });

// Local secrets, generated once and kept (git-ignored): the admin API token.
if (!existsSync(envFile)) {
  writeFileSync(envFile, `ADMIN_TOKEN=${randomBytes(24).toString("hex")}\n`, { mode: 0o600 });
}
// The token the Worker gets from the same file (dotenv syntax, Node's own parser).
const adminToken = parseEnv(readFileSync(envFile, "utf8")).ADMIN_TOKEN;

const server = await startDevServer({ port, persistTo: stateDir, envFile, stdio: "inherit" });
const stop = async () => { await server.stop(); process.exit(0); };
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

// Seed the local configuration from the checked-in file (edit it and restart to change).
const settings = readFileSync(join(ROOT, "config", "settings.json"), "utf8");
const seeded = await fetch(`${server.url}/admin/settings`, {
  method: "PUT",
  headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
  body: settings,
});
if (!seeded.ok) {
  console.error(`seeding config/settings.json failed: ${seeded.status} ${await seeded.text()}`);
  await server.stop();
  process.exit(1);
}

// Demo clients and users from the checked-in files, then the sample patients.
const read = (name) => JSON.parse(readFileSync(join(ROOT, "config", name), "utf8"));
await registerAll(server.url, adminToken, "clients", read("clients.json"));
await registerAll(server.url, adminToken, "users", read("users.json"));
const shared = process.env.SMART_EDGE_DATA ?? join(ROOT, "..", "shared", "fhir-data", "synthea-r4");
const dataDir = existsSync(shared) ? shared : join(ROOT, "tests", "fixtures", "synthea");
const bundles = readdirSync(dataDir).filter((f) => f.endsWith(".json") && !/^(hospital|practitioner)Information/.test(f)).length;
const present = await patientCount(server.url, adminToken);
if (present >= bundles) {
  console.log(`sample patients already loaded (${present} patients in .state/)`);
} else {
  console.log(`loading sample patients from ${dataDir}`);
  const loaded = await loadFolder(server.url, adminToken, dataDir);
  console.log(`loaded ${loaded.stored} resources from ${loaded.files} bundles`);
}

const u = server.url;
console.log(`
smart-edge is running on ${u}  (state: .state/, Ctrl-C to stop)

  Open the EHR launch portal ${u}/ehr/
    sign in as dr.smith / smart-edge-demo, search a patient, open Lab Viewer

  Home page and SDK check    ${u}/
  FHIR base                  ${u}/fhir
  SMART configuration        ${u}/fhir/.well-known/smart-configuration
  OpenID configuration       ${u}/.well-known/openid-configuration
  Signing keys (JWKS)        ${u}/.well-known/jwks.json
  FHIR CapabilityStatement   ${u}/fhir/metadata
  Admin API                  ${u}/admin/settings  (Authorization: Bearer <ADMIN_TOKEN from .dev.vars>)
  EHR launch API             POST ${u}/auth/ehr/launch  (same token; body {"client_id": "lab-viewer", "patient": "…"})

Demo sign-in (config/users.json): dr.smith / smart-edge-demo (practitioner), ned / smart-edge-demo (patient)
Demo client (config/clients.json): lab-viewer
`);
server.child.on("exit", (code) => process.exit(code ?? 0));
