// Upgrading a deployment: the CURRENT Worker started on the state folder the previous release
// (7c4a4d6) wrote (tests/fixtures/upgrade, made by make-state.mjs there). Its Durable Objects
// migrate on first use, its partitions re-index (lazily, then the background job), its grants,
// keys, clients, users and KV records keep working, and a second start changes nothing more.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import * as jose from "jose";
import { randomUUID } from "node:crypto";
import { start, MappedAgent, readAll, digest, fixtureRefs, PRACTITIONER, CONFIDENTIAL } from "./fixtures/upgrade/make-state.mjs";
import { authorize, exchange, form, refresh } from "./helpers/flows.mjs";
import { ROOT, tempDir } from "./helpers/worker.mjs";

const FIXTURE = join(ROOT, "tests", "fixtures", "upgrade");
const state = JSON.parse(readFileSync(join(FIXTURE, "state.json"), "utf8"));
const { refs } = fixtureRefs(join(ROOT, "tests", "fixtures", "synthea"));
const NED = state.patients.ned;
const BUSTER = state.patients.buster;

// Reads every Durable Object database of a state folder with Python's sqlite3 (the real
// files, after workerd stopped): per object, its class, schema version, index version and a
// digest of each data table.
function inspect(folder) {
  const script = `
import glob, hashlib, json, os, sqlite3, sys
out = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "do", "*", "*.sqlite"))):
    if os.path.basename(path) == "metadata.sqlite":
        continue
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\\\_cf\\\\_%' ESCAPE '\\\\' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    entry = {"class": os.path.basename(os.path.dirname(path)).lstrip("-"), "tables": {}}
    for t in tables:
        rows = sorted(json.dumps(r, default=str) for r in db.execute(f"SELECT * FROM {t}").fetchall())
        entry["tables"][t] = {"rows": len(rows), "digest": hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()}
    entry["schema_version"] = db.execute("SELECT version FROM schema_version").fetchone()[0] if "schema_version" in tables else None
    entry["index_version"] = (db.execute("SELECT v FROM meta WHERE k = 'index_version'").fetchone() or [None])[0] if "meta" in tables else None
    entry["idx_names"] = sorted({r[0] for r in db.execute("SELECT DISTINCT name FROM idx")}) if "idx" in tables else []
    out[os.path.basename(path)] = entry
    db.close()
print(json.dumps(out))
`;
  return JSON.parse(execFileSync("python3", ["-c", script, folder], { encoding: "utf8" }));
}

const persistTo = tempDir("upgrade-");
execFileSync("tar", ["-xzf", join(FIXTURE, "state.tar.gz"), "-C", persistTo]);
const before_ = inspect(persistTo);
let w;
let token;
const bearer = (t = token) => ({ Authorization: `Bearer ${t}` });
const kv = async (key) => (await w.mf.getKVNamespace("CONFIG")).get(key);

before(async () => {
  w = await start(ROOT, persistTo);
});
after(async () => {
  await w?.mf.dispose();
});

async function search(path, t = token) {
  const res = await w.fetch(`/fhir/${path}`, { headers: bearer(t) });
  const body = await res.json();
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(body)}`);
  return (body.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();
}

async function status() {
  const res = await w.fetch("/admin/fhir/status", { headers: { Authorization: `Bearer ${state.admin_token}` } });
  assert.equal(res.status, 200);
  return res.json();
}

test("the state folder is the previous release's: no schema versions, no index rows of the new parameters", () => {
  const objects = Object.values(before_);
  assert.ok(objects.length >= 8, `${objects.length} objects`);
  assert.ok(objects.every((o) => o.schema_version === null), "unversioned");
  const partitions = objects.filter((o) => o.class === "FhirPartition");
  assert.ok(partitions.length >= 5, `${partitions.length} partitions`);
  for (const p of partitions) {
    assert.ok(!p.idx_names.includes("verification-status") && !p.idx_names.includes("phone") && !p.idx_names.includes("address-city"), p.idx_names.join());
  }
});

test("KV records of the previous release are read as they are, and written back with their version", async () => {
  for (const [key, raw] of Object.entries(state.raw_kv)) assert.equal(await kv(key), raw, `${key} untouched before use`);
  assert.equal(JSON.parse(state.raw_kv["config:server"]).record_version, undefined);
  const settings = await (await w.fetch("/admin/settings", { headers: { Authorization: `Bearer ${state.admin_token}` } })).json();
  assert.deepEqual(settings, state.settings);
  const upgraded = JSON.parse(await kv("config:server"));
  assert.equal(upgraded.record_version, 1);
  delete upgraded.record_version;
  assert.deepEqual(upgraded, JSON.parse(state.raw_kv["config:server"]), "only the version was added");
  const client = await w.fetch(`/admin/clients/${state.clients.public}`, { headers: { Authorization: `Bearer ${state.admin_token}` } });
  assert.equal(client.status, 200);
  assert.equal((await client.json()).client_id, state.clients.public);
  assert.equal(JSON.parse(await kv(`client:${state.clients.public}`)).record_version, 1);
});

test("the refresh token issued by the previous release still refreshes", async () => {
  const { res, body } = await refresh(w, state.tokens.refresh_token);
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.token_type, "Bearer");
  assert.equal(body.scope, state.tokens.scope);
  assert.ok(body.refresh_token && body.refresh_token !== state.tokens.refresh_token, "rotated");
  token = body.access_token;
});

test("searches on parameters the previous release did not index find its resources (lazy re-index on first search)", async () => {
  assert.equal((await status()).index.job, null, "no job yet");
  assert.deepEqual(await search(`Patient?phone=555-0100`), [`Patient/${NED}`]);
  assert.deepEqual(await search(`Patient?address-city=Halifax`), [`Patient/${NED}`]);
  const confirmed = await search(`Condition?patient=${NED}&verification-status=confirmed&_count=50`);
  assert.equal(confirmed.length, 3);
  assert.deepEqual(await search(`Encounter?patient=${NED}&reason-code=444814009`).then((r) => r.length), 2);
});

test("the background job re-indexes every partition, its progress reaching the total", async () => {
  // A read does one bounded re-index step in its partition (50 of its ~70 resources).
  const third = state.patient_ids.find((id) => id !== NED && id !== BUSTER);
  assert.equal((await w.fetch(`/fhir/Patient/${third}`, { headers: bearer() })).status, 200);
  const start = await w.fetch("/admin/fhir/reindex", { method: "POST", headers: { Authorization: `Bearer ${state.admin_token}` } });
  assert.equal(start.status, 202);
  const job = await start.json();
  assert.equal(job.index_version, (await status()).index.index_version);
  const partitions = Object.values(before_).filter((o) => o.class === "FhirPartition").length;
  assert.equal(job.total, partitions, "the directory and every partition it records");
  let current;
  for (let i = 0; i < 200; i++) {
    current = (await status()).index.job;
    if (current.finished_at) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(current.done, current.total);
  assert.equal(current.total, partitions);
  assert.ok(current.finished_at >= current.started_at);
  assert.equal(current.last_error, null);
  // A partition nothing touched since the upgrade finds its resources by the new rows.
  assert.equal((await search(`Condition?patient=${BUSTER}&verification-status=confirmed&_count=50`)).length, 3);
  assert.equal((await search(`Encounter?patient=${BUSTER}&reason-code=444814009`)).length, 2);
  // One the read left half done, finished by the job from its cursor.
  // combo-code is new: every one of its Observations (48, one deleted by make-state), across
  // both steps, has its rows.
  assert.equal((await search(`Observation?patient=${third}&combo-code=http://loinc.org|&_count=100`)).length, 47);
  assert.equal((await search(`Condition?patient=${third}&verification-status=confirmed`)).length, 1);
  assert.equal((await search(`Patient?address-city=Wilmington`)).length, 1);
});

test("every resource and its history is readable, contents unchanged", async () => {
  const read = await readAll(w, token, refs);
  const deleted = state.history.deleted.ref;
  for (const ref of refs) {
    if (ref === deleted) {
      assert.equal(read[ref].status, 410, ref);
      continue;
    }
    assert.equal(read[ref].status, 200, `${ref}: ${JSON.stringify(read[ref].resource)}`);
    assert.deepEqual({ version: read[ref].resource.meta.versionId, digest: digest(read[ref].resource) }, state.resources[ref], ref);
  }
  assert.equal(Object.keys(state.resources).length, refs.length - 1);
  for (const { ref, versions } of Object.values(state.history)) {
    const res = await w.fetch(`/fhir/${ref}/_history`, { headers: bearer() });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.total, versions, ref);
    for (let v = 1; v <= versions; v++) {
      const vread = await w.fetch(`/fhir/${ref}/_history/${v}`, { headers: bearer() });
      assert.equal(vread.status, ref === deleted && v === versions ? 410 : 200, `${ref} v${v}`);
    }
  }
});

test("the previous release's signing keys are still published, and its access token verifies with them", async () => {
  const jwks = await (await w.fetch("/.well-known/jwks.json")).json();
  const kids = jwks.keys.map((k) => k.kid);
  for (const kid of state.jwks) assert.ok(kids.includes(kid), `kept ${kid}`);
  assert.ok(kids.includes(state.tokens.kid));
  const { payload } = await jose.jwtVerify(state.tokens.access_token, jose.createLocalJWKSet(jwks), { currentDate: new Date(state.written_at), issuer: state.public });
  assert.equal(payload.scope, state.tokens.scope);
  // The token itself lives at most a day (the longest access token lifetime): accepted while
  // it is valid, refused as expired after — the fixture is older than a day on most runs.
  const res = await w.fetch(`/fhir/Patient/${NED}`, { headers: bearer(state.tokens.access_token) });
  if (Date.now() / 1000 < payload.exp - 5) {
    assert.equal(res.status, 200);
  } else {
    assert.equal(res.status, 401);
    assert.match(res.headers.get("www-authenticate"), /invalid_token/);
  }
});

test("clients and users of the previous release sign in; a backend client gets a token", async () => {
  const agent = new MappedAgent(w.real);
  const { code, verifier } = await authorize(w, { scope: "openid fhirUser user/*.rs", agent, user: PRACTITIONER, client_id: CONFIDENTIAL.client_id });
  const basic = `Basic ${Buffer.from(`${CONFIDENTIAL.client_id}:${state.clients.confidential_secret}`).toString("base64")}`;
  const { res, body } = await exchange(w, code, verifier, { client_id: undefined }, { headers: { Authorization: basic } });
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal((await w.fetch(`/fhir/Patient/${NED}`, { headers: bearer(body.access_token) })).status, 200);
  assert.equal(JSON.parse(await kv(`user:${PRACTITIONER.username}`)).record_version, 1, "the user record was upgraded at login");

  const key = await jose.importJWK(state.backend_private_jwk, "ES256");
  const assertion = await new jose.SignJWT({ iss: state.clients.backend, sub: state.clients.backend, aud: `${state.public}/auth/token`, jti: randomUUID() })
    .setProtectedHeader({ alg: "ES256", kid: state.backend_private_jwk.kid, typ: "JWT" })
    .setExpirationTime("4m")
    .sign(key);
  const backend = await w.fetch("/auth/token", form({
    grant_type: "client_credentials",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: assertion,
    scope: "system/Patient.rs",
  }));
  assert.equal(backend.status, 200, await backend.clone().text());
  assert.equal((await w.fetch(`/fhir/Patient/${BUSTER}`, { headers: bearer((await backend.json()).access_token) })).status, 200);
});

test("every object is at the current schema version; a second start on the upgraded state changes nothing more", async () => {
  const { index } = await status();
  await w.mf.dispose();
  w = undefined;
  const first = inspect(persistTo);
  const versions = { KeyVault: 2, Grant: 1, Account: 1, AssertionLog: 1, FhirPartition: 4 };
  for (const [file, o] of Object.entries(first)) {
    if (o.schema_version === null) continue; // a grant object deleted by its alarm meanwhile
    assert.equal(o.schema_version, versions[o.class], `${o.class} ${file}`);
    if (o.class === "FhirPartition") assert.equal(o.index_version, index.index_version, file);
  }
  const upgraded = Object.values(first).filter((o) => o.schema_version !== null);
  assert.ok(upgraded.filter((o) => o.class === "FhirPartition").length >= 5);
  assert.ok(upgraded.some((o) => o.class === "KeyVault") && upgraded.some((o) => o.class === "AssertionLog") && upgraded.some((o) => o.class === "Account"));

  w = await start(ROOT, persistTo);
  const kvBefore = await Promise.all(Object.keys(state.raw_kv).map(kv));
  assert.deepEqual(await search(`Condition?patient=${BUSTER}&verification-status=confirmed&_count=50`).then((r) => r.length), 3);
  assert.equal((await readAll(w, token, refs.slice(0, 20)))[refs[0]].status, 200);
  assert.equal((await status()).index.job.done, index.job.total);
  assert.deepEqual(await Promise.all(Object.keys(state.raw_kv).map(kv)), kvBefore);
  await w.mf.dispose();
  w = undefined;
  const second = inspect(persistTo);
  for (const [file, o] of Object.entries(first)) {
    if (o.class !== "FhirPartition" && o.class !== "KeyVault") continue;
    assert.deepEqual(second[file], o, `${o.class} ${file} unchanged`);
  }
});

test("an object written by a newer release is refused, and left as it was", async () => {
  // The upgraded folder's key vault, marked as written by a schema version this code lacks.
  const vault = Object.entries(inspect(persistTo)).find(([, o]) => o.class === "KeyVault");
  assert.ok(vault, "a key vault");
  const [file, before] = vault;
  const path = execFileSync("sh", ["-c", `ls "${persistTo}"/do/*KeyVault/${file}`], { encoding: "utf8" }).trim();
  execFileSync("python3", ["-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('UPDATE schema_version SET version = 99'); db.commit(); db.close()", path]);
  w = await start(ROOT, persistTo);
  const res = await w.fetch("/.well-known/jwks.json");
  assert.equal(res.status, 500);
  assert.ok(!(await res.text()).includes('"keys"'), "no keys served from it");
  await w.mf.dispose();
  w = undefined;
  const after_ = inspect(persistTo)[file];
  assert.equal(after_.schema_version, 99, "not migrated down");
  assert.deepEqual(after_.tables.signing_keys, before.tables.signing_keys, "its keys untouched");
});
