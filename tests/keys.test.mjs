// Signing keys: the published JWKS imports in an independent JOSE library (jose) and verifies
// tokens the Worker signed through WebCrypto; keys are generated once; rotation publishes
// before it signs; the SIGNING_KEYS secret replaces the key vault.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as jose from "jose";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";

let w;
before(async () => { w = await startWorker(); });
after(() => w.dispose());

async function sign(worker, alg, claims = { sub: "test", aud: "x" }) {
  const { res, body } = await worker.json(`/_dev/sign?alg=${alg}`, { method: "POST", body: JSON.stringify(claims) });
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.token;
}

test("JWKS: one RSA (RS256) and one EC P-256 (ES256) key, each with a kid, no private member", async () => {
  const { res, body } = await w.json("/.well-known/jwks.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/jwk-set\+json/);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.match(res.headers.get("cache-control"), /max-age=300/);
  assert.deepEqual(body.keys.map((k) => k.alg).sort(), ["ES256", "RS256"]);
  for (const key of body.keys) {
    assert.ok(key.kid, "kid present");
    assert.equal(key.use, "sig");
    for (const member of ["d", "p", "q", "dp", "dq", "qi"]) assert.equal(key[member], undefined, member);
    // The kid is the RFC 7638 thumbprint, recomputed independently.
    assert.equal(key.kid, await jose.calculateJwkThumbprint(key, "sha256"));
    await jose.importJWK(key, key.alg); // imports in an independent library
  }
  const rsa = body.keys.find((k) => k.kty === "RSA");
  assert.ok(Buffer.from(rsa.n, "base64url").length >= 256, "RSA modulus is at least 2048 bits");
  assert.equal(body.keys.find((k) => k.kty === "EC").crv, "P-256");
});

for (const alg of ["RS256", "ES256"]) {
  test(`a token the Worker signed with ${alg} verifies against the published JWKS`, async () => {
    const claims = { sub: "patient-1", aud: "https://app.example", iss: w.url, n: 42 };
    const token = await sign(w, alg, claims);
    const jwks = jose.createRemoteJWKSet(new URL(`${w.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { algorithms: [alg], issuer: w.url });
    assert.equal(protectedHeader.alg, alg);
    assert.equal(protectedHeader.typ, "JWT");
    assert.deepEqual(payload, claims);
    // A tampered payload fails.
    const [h, , s] = token.split(".");
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: "patient-2" })).toString("base64url")}.${s}`;
    await assert.rejects(jose.jwtVerify(forged, jwks), /signature verification failed/);
  });
}

test("the dev sign route refuses bad input with invalid_request", async () => {
  for (const [query, body] of [["alg=HS256", "{}"], ["alg=ES256&n=99999", "{}"], ["alg=ES256", "[1]"], ["alg=ES256", "not json"]]) {
    const res = await w.json(`/_dev/sign?${query}`, { method: "POST", body });
    assert.equal(res.res.status, 400, query);
    assert.equal(res.body.error, "invalid_request", query);
  }
});

test("concurrent first requests on a fresh server see one key set", async () => {
  const fresh = await startWorker();
  try {
    const sets = await Promise.all(Array.from({ length: 8 }, () => fresh.json("/.well-known/jwks.json").then((r) => r.body)));
    const kids = new Set(sets.flatMap((s) => s.keys.map((k) => k.kid)));
    assert.equal(kids.size, 2);
  } finally {
    await fresh.dispose();
  }
});

test("rotation publishes new keys at once and keeps signing with the old ones until they activate", async () => {
  const fresh = await startWorker();
  try {
    const before = (await fresh.json("/.well-known/jwks.json")).body.keys.map((k) => k.kid);
    const denied = await fresh.fetch("/admin/keys/rotate", { method: "POST" });
    assert.equal(denied.status, 401);
    const { res, body } = await fresh.json("/admin/keys/rotate", { method: "POST", headers: adminHeaders() });
    assert.equal(res.status, 200);
    assert.equal(body.keys.length, 4);
    const published = (await fresh.json("/.well-known/jwks.json")).body.keys.map((k) => k.kid);
    assert.equal(published.length, 4);
    for (const kid of before) assert.ok(published.includes(kid));
    const token = await sign(fresh, "ES256");
    assert.ok(before.includes(jose.decodeProtectedHeader(token).kid), "the old key signs until the new one activates");
  } finally {
    await fresh.dispose();
  }
});

async function privateJwk(alg) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  return { ...(await jose.exportJWK(privateKey)), alg };
}

test("SIGNING_KEYS secret: its keys are published and the first of each algorithm signs", async () => {
  const keys = [await privateJwk("ES256"), await privateJwk("RS256"), await privateJwk("ES256")];
  keys[0].kid = "ec-2026-11";
  const secretWorker = await startWorker({ bindings: { SIGNING_KEYS: JSON.stringify({ keys }) } });
  try {
    const { body } = await secretWorker.json("/.well-known/jwks.json");
    assert.equal(body.keys.length, 3);
    assert.equal(body.keys[0].kid, "ec-2026-11");
    assert.equal(body.keys[1].kid, await jose.calculateJwkThumbprint(keys[1]), "a key without kid gets its thumbprint");
    const token = await sign(secretWorker, "ES256");
    assert.equal(jose.decodeProtectedHeader(token).kid, "ec-2026-11");
    await jose.jwtVerify(token, jose.createLocalJWKSet(body));
    const rsaToken = await sign(secretWorker, "RS256");
    await jose.jwtVerify(rsaToken, jose.createLocalJWKSet(body));
    const rotate = await secretWorker.json("/admin/keys/rotate", { method: "POST", headers: adminHeaders() });
    assert.equal(rotate.res.status, 400);
    assert.equal(rotate.body.error, "invalid_request");
  } finally {
    await secretWorker.dispose();
  }
});

test("a broken SIGNING_KEYS secret is a logged server_error, not a crash", async () => {
  const broken = await startWorker({ bindings: { SIGNING_KEYS: '{"keys":[{"kty":"RSA","alg":"RS256"}]}' } });
  try {
    const { res, body } = await broken.json("/.well-known/jwks.json");
    assert.equal(res.status, 500);
    assert.deepEqual(body, { error: "server_error", error_description: "internal server error" });
    assert.equal((await broken.fetch("/health")).status, 200, "the Worker keeps serving");
  } finally {
    await broken.dispose();
  }
});
