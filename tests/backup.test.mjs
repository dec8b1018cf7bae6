// Backup and restore (README, "Backup and restore"): worker A is seeded with settings,
// clients, users, a signed-in user's grant, a rotated signing key and the Synthea fixtures
// with history (updates, a delete); `npm run backup` writes it to a file, `npm run restore`
// puts it into an empty worker B with the same public URL (the same issuer), and B answers
// exactly as A did: every resource and its history, searches, JWKS, A's tokens, logins. A
// backup of B has the same lines as A's. A restore into a non-empty worker is refused (409)
// and a page with a bad line writes nothing (400 naming the line).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import * as jose from "jose";
import { startWorker, adminHeaders, tempDir, ROOT, ADMIN_TOKEN } from "./helpers/worker.mjs";
import { seed, APP, PRACTITIONER, PATIENT_USER, NED, REDIRECT, authorizeUrl } from "./helpers/fixtures.mjs";
import { Agent, pkce } from "./helpers/agent.mjs";
import { form, exchange, refresh } from "./helpers/flows.mjs";

const run = promisify(execFile);
const dir = tempDir("smart-edge-backup-");
const fileA = join(dir, "a.ndjson");
const fileB = join(dir, "b.ndjson");

let A;
let B;
let backendKey;
const SETTINGS = {
  server_name: "Backed-up EHR",
  ehr_origins: [],
  introspection_style: "rfc7662",
  refresh_grace_secs: 0,
  open_registration: false,
  registration_token_hash: null,
  associated_endpoints: [],
  user_access_brand: null,
};
const BACKEND = "backup-backend";
let tokensA; // A's access and refresh tokens from a sign-in with consent
let ids; // every Type/id stored (from A's backup)

async function command(args, env = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "scripts", "backup.mjs"), ...args], { env: { ...process.env, ADMIN_TOKEN, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function backendToken(w, issuer) {
  const assertion = await new jose.SignJWT({ iss: BACKEND, sub: BACKEND, aud: `${issuer}/auth/token`, exp: Math.floor(Date.now() / 1000) + 240, jti: randomUUID() })
    .setProtectedHeader({ alg: "ES384", kid: "backup-1", typ: "JWT" })
    .sign(backendKey.privateKey);
  const res = await w.fetch("/auth/token", form({
    grant_type: "client_credentials",
    scope: "system/*.cruds",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: assertion,
  }));
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.access_token;
}

/** A sign-in with consent at `w` whose FHIR base (its issuer's) is `aud`; answers the code. */
async function signIn(w, aud, user = PRACTITIONER) {
  const { verifier, challenge } = await pkce();
  const agent = new Agent(w.url);
  const scope = "launch/patient openid fhirUser offline_access patient/*.rs";
  let page = await agent.go(authorizeUrl(w, { scope, aud, code_challenge: challenge, nonce: "n-1" }));
  page = await agent.submit(page, "#login-submit", { fill: { username: user.username, password: user.password } });
  if (page.doc?.querySelector(".patient-pick")) page = await agent.submit(page, `.patient-pick[value='${NED}']`);
  if (page.doc?.querySelector("#approve")) page = await agent.submit(page, "#approve");
  assert.ok(page.redirect, `no redirect: ${page.res.status} ${page.html?.slice(0, 300)}`);
  assert.equal(`${page.redirect.origin}${page.redirect.pathname}`, REDIRECT);
  return { code: page.redirect.searchParams.get("code"), verifier };
}

function lines(file) {
  return readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0);
}

before(async () => {
  A = await startWorker();
  B = await startWorker({ bindings: { PUBLIC_BASE_URL: A.url } });
  const { publicKey, privateKey } = await jose.generateKeyPair("ES384", { extractable: true });
  backendKey = { privateKey, publicJwk: { ...(await jose.exportJWK(publicKey)), kid: "backup-1", alg: "ES384" } };

  assert.equal((await A.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify(SETTINGS) })).status, 200);
  await seed(A, {
    clients: [
      APP,
      { ...APP, client_id: "secret-app", client_name: "Secret App", client_type: "confidential-symmetric", client_secrets: ["s".repeat(40)] },
      { client_id: BACKEND, client_name: "Backup backend", client_type: "backend", scope: "system/*.cruds", jwks: { keys: [backendKey.publicJwk] } },
    ],
    users: [PRACTITIONER, PATIENT_USER],
  });
  // History: Ned's record updated twice, an Observation deleted, a shared resource updated.
  const system = await backendToken(A, A.url);
  const auth = { Authorization: `Bearer ${system}`, "Content-Type": "application/fhir+json" };
  const ned = await (await A.fetch(`/fhir/Patient/${NED}`, { headers: auth })).json();
  for (const gender of ["other", "male"]) {
    const res = await A.fetch(`/fhir/Patient/${NED}`, { method: "PUT", headers: auth, body: JSON.stringify({ ...ned, gender }) });
    assert.equal(res.status, 200, await res.text());
  }
  const observations = await (await A.fetch(`/fhir/Observation?patient=${NED}&_count=2`, { headers: auth })).json();
  const gone = observations.entry[0].resource.id;
  assert.ok([200, 204].includes((await A.fetch(`/fhir/Observation/${gone}`, { method: "DELETE", headers: auth })).status));
  const org = { resourceType: "Organization", id: "backup-org", name: "First name" };
  for (const name of ["First name", "Second name"]) {
    const res = await A.fetch("/fhir/Organization/backup-org", { method: "PUT", headers: auth, body: JSON.stringify({ ...org, name }) });
    assert.ok([200, 201].includes(res.status), await res.text());
  }
  // A signed-in user's grant (consent given), then a rotated signing key.
  const { code, verifier } = await signIn(A, `${A.url}/fhir`);
  const exchanged = await exchange(A, code, verifier);
  assert.equal(exchanged.res.status, 200, JSON.stringify(exchanged.body));
  tokensA = exchanged.body;
  assert.ok(tokensA.refresh_token);
  assert.equal((await A.fetch("/admin/keys/rotate", { method: "POST", headers: adminHeaders() })).status, 200);
});

after(async () => {
  await A?.dispose();
  await B?.dispose();
});

test("npm run backup writes every page; npm run restore fills an empty deployment", async () => {
  const backup = await command(["backup", "--url", A.url, "--out", fileA, "--page-lines", "60"]);
  assert.equal(backup.code, 0, backup.stderr);
  assert.ok(!backup.stderr.includes(ADMIN_TOKEN) && !backup.stdout.includes(ADMIN_TOKEN), "the token is never printed");
  assert.match(backup.stderr, /backup: page 5,/, "several pages");
  const all = lines(fileA);
  const kinds = all.map((l) => JSON.parse(l).kind);
  assert.equal(kinds[0], "header");
  assert.equal(kinds.at(-1), "end");
  for (const kind of ["settings", "client", "user", "key", "account", "grant", "directory", "resource-version"]) {
    assert.ok(kinds.includes(kind), `a ${kind} line`);
  }
  assert.equal(kinds.filter((k) => k === "client").length, 3);
  assert.equal(kinds.filter((k) => k === "key").length, 4, "two algorithms, before and after the rotation");
  const versions = all.map((l) => JSON.parse(l)).filter((r) => r.kind === "resource-version");
  assert.ok(versions.some((v) => v.deleted), "a deletion is kept");
  assert.ok(versions.some((v) => v.type === "Patient" && v.id === NED && v.version === 3 && v.partition === `patient/${NED}`));
  ids = [...new Set(versions.filter((v) => v.partition !== "directory").map((v) => `${v.type}/${v.id}`))];
  assert.ok(ids.length > 100, `${ids.length} resources`);

  const restore = await command(["restore", "--url", B.url, "--in", fileA, "--page-lines", "70"]);
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(restore.stderr, /restore: page 3, .*\n/);
  assert.match(restore.stderr, /finished/);
  assert.ok(!restore.stderr.includes(ADMIN_TOKEN));
});

test("a backup of the restored deployment has exactly the same lines", async () => {
  const backup = await command(["backup", "--url", B.url, "--out", fileB]);
  assert.equal(backup.code, 0, backup.stderr);
  const [headerA, ...restA] = lines(fileA);
  const [headerB, ...restB] = lines(fileB);
  assert.notEqual(JSON.parse(headerA).backup_id, JSON.parse(headerB).backup_id);
  assert.deepEqual(restB, restA, "same lines in the same order");
});

test("every resource and its history read the same at B (ids, versionId, lastUpdated, content)", async () => {
  const tokenA = await backendToken(A, A.url);
  const tokenB = await backendToken(B, A.url);
  const read = async (w, token, path) => {
    const res = await w.fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    return { status: res.status, etag: res.headers.get("etag"), modified: res.headers.get("last-modified"), body: await res.text() };
  };
  const strip = (bundle) => JSON.parse(bundle).entry?.map((e) => [e.fullUrl, e.resource, e.request, e.response]);
  let compared = 0;
  const queue = [...ids];
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      const [a, b] = await Promise.all([read(A, tokenA, `/fhir/${id}`), read(B, tokenB, `/fhir/${id}`)]);
      assert.ok([200, 410].includes(a.status), `${id}: ${a.status}`);
      assert.deepEqual(b, a, id);
      const [ha, hb] = await Promise.all([read(A, tokenA, `/fhir/${id}/_history`), read(B, tokenB, `/fhir/${id}/_history`)]);
      assert.equal(hb.status, 200);
      assert.deepEqual(strip(hb.body), strip(ha.body), `${id}/_history`);
      compared++;
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  assert.equal(compared, ids.length);
  const ned = JSON.parse((await read(B, tokenB, `/fhir/Patient/${NED}/_history`)).body);
  assert.deepEqual(ned.entry.map((e) => e.resource.meta.versionId), ["3", "2", "1"]);
});

test("searches find the same ids at B: the index is rebuilt", async () => {
  const tokenA = await backendToken(A, A.url);
  const tokenB = await backendToken(B, A.url);
  const found = async (w, token, query) => {
    const res = await w.fetch(`/fhir/${query}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, query);
    return (await res.json()).entry?.map((e) => e.resource.id).sort() ?? [];
  };
  for (const query of [
    `Observation?patient=${NED}&_count=500`,
    `Observation?patient=${NED}&category=laboratory&_count=500`,
    `Condition?patient=${NED}`,
    `Encounter?patient=${NED}&date=ge2010-01-01&_count=500`,
    "Patient?gender=male",
    "Patient?name=Ned",
    "Organization?name=Second",
    "Organization?name=First",
  ]) {
    const [a, b] = [await found(A, tokenA, query), await found(B, tokenB, query)];
    assert.deepEqual(b, a, query);
    if (!query.includes("First")) assert.ok(a.length > 0, `${query} finds something`);
  }
});

test("JWKS, A's access token and A's refresh token (once) work at B", async () => {
  assert.deepEqual((await B.json("/.well-known/jwks.json")).body, (await A.json("/.well-known/jwks.json")).body);
  const read = await B.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: `Bearer ${tokensA.access_token}` } });
  assert.equal(read.status, 200, await read.text());
  const refreshed = await refresh(B, tokensA.refresh_token, { client_id: APP.client_id });
  assert.equal(refreshed.res.status, 200, JSON.stringify(refreshed.body));
  assert.notEqual(refreshed.body.refresh_token, tokensA.refresh_token);
  const again = await refresh(B, tokensA.refresh_token, { client_id: APP.client_id });
  assert.equal(again.res.status, 400);
  assert.equal(again.body.error, "invalid_grant");
});

test("clients, users and settings work at B: a new sign-in, a confidential client", async () => {
  assert.deepEqual((await B.json("/admin/settings", { headers: adminHeaders() })).body, SETTINGS);
  const { code, verifier } = await signIn(B, `${A.url}/fhir`, PATIENT_USER);
  const exchanged = await exchange(B, code, verifier);
  assert.equal(exchanged.res.status, 200, JSON.stringify(exchanged.body));
  assert.equal(exchanged.body.patient, NED);
  const wrongSecret = await B.fetch("/auth/token", form({ grant_type: "refresh_token", refresh_token: "x", client_id: "secret-app", client_secret: "t".repeat(40) }));
  assert.equal(wrongSecret.status, 401);
  assert.equal((await B.json("/admin/users/ned", { headers: adminHeaders() })).body.fhir_user, `Patient/${NED}`);
});

test("a restore into a deployment that is not empty is refused (409) and changes nothing", async () => {
  const [header, ...rest] = lines(fileA);
  const settings = rest.find((l) => JSON.parse(l).kind === "settings");
  const changed = settings.replace("Backed-up EHR", "Overwritten EHR");
  const post = (w, body) => w.json("/admin/restore", { method: "POST", headers: adminHeaders({ "Content-Type": "application/x-ndjson" }), body });
  const intoA = await post(A, `${header}\n${changed}\n`);
  assert.equal(intoA.res.status, 409);
  assert.equal(intoA.body.error, "restore_refused");
  assert.match(intoA.body.error_description, /not empty/);
  assert.equal((await A.json("/admin/settings", { headers: adminHeaders() })).body.server_name, "Backed-up EHR");
  // B finished a restore: not even the same backup's pages are taken again.
  const again = await post(B, `${header}\n${changed}\n`);
  assert.equal(again.res.status, 409);
  assert.match(again.body.error_description, /already restored/);
  assert.equal((await B.json("/admin/settings", { headers: adminHeaders() })).body.server_name, "Backed-up EHR");
});

test("a corrupted line refuses its page (400 naming the line) and nothing is written", async () => {
  const C = await startWorker();
  try {
    const all = lines(fileA);
    const versionAt = all.findIndex((l) => JSON.parse(l).kind === "resource-version");
    assert.ok(versionAt > 101, "the corrupted line is on a later page than the first");
    const corrupt = all.slice();
    corrupt[versionAt] = corrupt[versionAt].replace(/"versionId":"\d+"/, '"versionId":"99"');
    const bad = join(dir, "corrupt.ndjson");
    writeFileSync(bad, corrupt.join("\n") + "\n");
    // Pages of 100 lines: the corrupted line's page is refused whole.
    const restore = await command(["restore", "--url", C.url, "--in", bad, "--page-lines", "100"]);
    assert.notEqual(restore.code, 0);
    assert.match(restore.stderr, new RegExp(`line ${versionAt + 1} of .*corrupt\\.ndjson: the content's meta\\.versionId`));

    const page = [all[0], all[1], corrupt[versionAt]].join("\n");
    const direct = await C.json("/admin/restore", { method: "POST", headers: adminHeaders(), body: page });
    assert.equal(direct.res.status, 400);
    assert.equal(direct.body.error, "invalid_request");
    assert.match(direct.body.error_description, /^line 3: /);
    const truncated = await command(["restore", "--url", C.url, "--in", writeTruncated(all)]);
    assert.notEqual(truncated.code, 0);
    assert.match(truncated.stderr, /does not end with the backup's end line/);
    // Only the pages before the corrupted one were written; a page of another backup is
    // refused while this restore is unfinished, and the same file, fixed, completes it.
    const other = JSON.stringify({ ...JSON.parse(all[0]), backup_id: "another" });
    const mixed = await C.json("/admin/restore", { method: "POST", headers: adminHeaders(), body: `${other}\n` });
    assert.equal(mixed.res.status, 409);
    assert.match(mixed.body.error_description, /under way/);
    const retry = await command(["restore", "--url", C.url, "--in", fileA]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.deepEqual((await C.json("/.well-known/jwks.json")).body, (await A.json("/.well-known/jwks.json")).body);
  } finally {
    await C.dispose();
  }
});

function writeTruncated(all) {
  const file = join(dir, "truncated.ndjson");
  writeFileSync(file, all.slice(0, -1).join("\n") + "\n");
  return file;
}

test("the backup endpoints want the admin token and a cursor they gave", async () => {
  const noToken = await A.json("/admin/backup");
  assert.equal(noToken.res.status, 401);
  assert.equal(noToken.body.error, "invalid_request");
  const badCursor = await A.json("/admin/backup?cursor=bm90LWEtY3Vyc29y", { headers: adminHeaders() });
  assert.equal(badCursor.res.status, 400);
  assert.equal(badCursor.body.error_description, "the cursor is not one this server gave");
  const restore = await A.json("/admin/restore", { method: "POST", body: "{}" });
  assert.equal(restore.res.status, 401);
  const first = await A.fetch("/admin/backup?lines=5", { headers: adminHeaders() });
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("content-type"), "application/x-ndjson");
  assert.equal(first.headers.get("cache-control"), "no-store");
  assert.match(first.headers.get("link"), /^<\/admin\/backup\?cursor=[A-Za-z0-9_-]+&lines=5>; rel="next"$/);
  const page = (await first.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  assert.deepEqual(page.map((r) => r.kind), ["header", "client", "client", "client", "settings"]);
  assert.deepEqual(Object.keys(page[0]), ["kind", "format", "version", "backup_id", "created_at"]);
  assert.equal(page[0].format, "smart-edge-backup");
  assert.equal(page[0].version, 1);
});
