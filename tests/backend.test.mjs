// SMART Backend Services on workerd: client_credentials with private_key_jwt assertions in
// RS384, ES384, RS256 and ES256, keys inline or behind a JWKS URL (served here on loopback,
// fetched, cached and fetched again for an unknown kid), jti replay, and every bad assertion
// refused as invalid_client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import * as jose from "jose";
import { startWorker } from "./helpers/worker.mjs";
import { seed, APP } from "./helpers/fixtures.mjs";
import { authorize, exchange, form } from "./helpers/flows.mjs";

let w;
let jwksServer;
let served = { keys: [] };
let fetches = 0;
const keys = {};

async function keyPair(alg, kid) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await jose.exportJWK(publicKey)), kid, alg } };
}

before(async () => {
  for (const alg of ["ES384", "RS384", "ES256", "RS256"]) keys[alg] = await keyPair(alg, `${alg.toLowerCase()}-1`);
  keys.rotated = await keyPair("ES384", "es384-2");
  jwksServer = createServer((req, res) => {
    fetches++;
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "max-age=600" });
    res.end(JSON.stringify(served));
  });
  await new Promise((r) => jwksServer.listen(0, "127.0.0.1", r));
  served = { keys: [keys.RS384.publicJwk] };
  w = await startWorker();
  const backend = (client_id, extra) => ({ client_id, client_name: client_id, client_type: "backend", scope: "system/Patient.rs system/Observation.rs", ...extra });
  await seed(w, {
    clients: [
      APP,
      backend("inline-backend", { jwks: { keys: [keys.ES384.publicJwk, keys.ES256.publicJwk, keys.RS256.publicJwk] } }),
      backend("url-backend", { jwks_uri: `http://127.0.0.1:${jwksServer.address().port}/jwks.json` }),
      { ...APP, client_id: "asymmetric-app", client_type: "confidential-asymmetric", jwks: { keys: [keys.ES384.publicJwk] }, consent: "pre-approved" },
    ],
  });
});
after(async () => {
  await w.dispose();
  jwksServer.close();
});

async function assertion(key, clientId, claims = {}, header = {}) {
  const exp = Math.floor(Date.now() / 1000) + 240;
  return new jose.SignJWT({ iss: clientId, sub: clientId, aud: `${w.url}/auth/token`, exp, jti: randomUUID(), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...header })
    .sign(key.privateKey);
}

async function token(clientAssertion, extra = {}) {
  const res = await w.fetch("/auth/token", form({
    grant_type: "client_credentials",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: clientAssertion,
    ...extra,
  }));
  return { res, body: await res.json() };
}

function refused({ res, body }, error = "invalid_client", status = 401) {
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error, error, body.error_description);
}

for (const [alg, client] of [["ES384", "inline-backend"], ["ES256", "inline-backend"], ["RS256", "inline-backend"], ["RS384", "url-backend"]]) {
  test(`client_credentials with an ${alg} assertion (${client}) gives a short-lived system token`, async () => {
    const { res, body } = await token(await assertion(keys[alg], client), { scope: "system/Observation.rs" });
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 300);
    assert.equal(body.scope, "system/Observation.rs");
    assert.equal(body.refresh_token, undefined);
    assert.equal(body.id_token, undefined);
    const jwks = jose.createRemoteJWKSet(new URL(`${w.url}/.well-known/jwks.json`));
    const { payload } = await jose.jwtVerify(body.access_token, jwks, { typ: "at+jwt", audience: `${w.url}/fhir`, issuer: w.url });
    assert.equal(payload.sub, client);
    assert.equal(payload.client_id, client);
    assert.equal(payload.exp - payload.iat, 300);
  });
}

test("without scope the client gets everything it may hold; a subset of what it asks (RFC 6749 §3.3); invalid_scope when none remains", async () => {
  const all = await token(await assertion(keys.ES384, "inline-backend"));
  assert.equal(all.body.scope, "system/Patient.rs system/Observation.rs");
  const subset = await token(await assertion(keys.ES384, "inline-backend"), { scope: "launch/patient openid patient/*.rs system/Observation.rs system/Condition.rs" });
  assert.equal(subset.res.status, 200, JSON.stringify(subset.body));
  assert.equal(subset.body.scope, "system/Observation.rs", "only what a backend may hold and the registration allows");
  refused(await token(await assertion(keys.ES384, "inline-backend"), { scope: "patient/*.rs" }), "invalid_scope", 400);
  refused(await token(await assertion(keys.ES384, "inline-backend"), { scope: "system/Condition.rs" }), "invalid_scope", 400);
});

test("a replayed assertion (same jti) is refused", async () => {
  const once = await assertion(keys.ES384, "inline-backend");
  assert.equal((await token(once)).res.status, 200);
  refused(await token(once));
});

test("every bad assertion is invalid_client", async () => {
  const key = keys.ES384;
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: "inline-backend", sub: "inline-backend", aud: `${w.url}/auth/token`, exp: now + 60, jti: randomUUID() };
  const hmacWithPublicKey = await new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256", kid: key.kid }).sign(new TextEncoder().encode(JSON.stringify(key.publicJwk)));
  const cases = [
    await assertion(key, "inline-backend", { aud: `${w.url}/auth/other` }),
    await assertion(key, "inline-backend", { sub: "someone-else" }),
    await new jose.SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: "ES384", kid: key.kid }).setIssuer("inline-backend").setSubject("inline-backend").setAudience(`${w.url}/auth/token`).setExpirationTime("20m").sign(key.privateKey),
    await new jose.SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: "ES384", kid: key.kid }).setIssuer("inline-backend").setSubject("inline-backend").setAudience(`${w.url}/auth/token`).setExpirationTime(now - 3600).sign(key.privateKey),
    await new jose.SignJWT({ iss: "inline-backend", sub: "inline-backend", aud: `${w.url}/auth/token`, exp: now + 60 }).setProtectedHeader({ alg: "ES384", kid: key.kid }).sign(key.privateKey),
    `${enc({ alg: "none", kid: key.kid })}.${enc(claims)}.`,
    hmacWithPublicKey,
    await assertion(keys.rotated, "inline-backend"),
    await assertion(keys.RS384, "inline-backend"),
    "not-a-jwt",
  ];
  for (const [i, bad] of cases.entries()) {
    const result = await token(bad);
    assert.equal(result.res.status, 401, `case ${i}: ${JSON.stringify(result.body)}`);
    refused(result);
  }
  refused(await token(""));
  const noAssertion = await w.fetch("/auth/token", form({ grant_type: "client_credentials", client_id: "inline-backend" }));
  refused({ res: noAssertion, body: await noAssertion.json() });
  const wrongType = await w.fetch("/auth/token", form({ grant_type: "client_credentials", client_assertion_type: "urn:other", client_assertion: await assertion(key, "inline-backend") }));
  refused({ res: wrongType, body: await wrongType.json() });
});

test("the JWKS URL is cached, and fetched again when the client rotates to a new kid", async () => {
  const before = fetches;
  assert.equal((await token(await assertion(keys.RS384, "url-backend"))).res.status, 200);
  assert.equal(fetches, before, "served from the cache (Cache-Control: max-age=600)");
  served = { keys: [keys.RS384.publicJwk, { ...keys.rotated.publicJwk }] };
  await new Promise((r) => setTimeout(r, 10_500)); // the refetch floor is 10 s
  const rotated = await token(await assertion(keys.rotated, "url-backend"));
  assert.equal(rotated.res.status, 200, JSON.stringify(rotated.body));
  assert.equal(fetches, before + 1);
});

test("a confidential-asymmetric app exchanges its code with private_key_jwt", async () => {
  const { code, verifier } = await authorize(w, { client_id: "asymmetric-app" });
  const clientAssertion = await assertion(keys.ES384, "asymmetric-app");
  const { res, body } = await exchange(w, code, verifier, {
    client_id: "asymmetric-app",
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: clientAssertion,
  });
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.ok(body.access_token && body.refresh_token);
});

test("backend clients cannot use the authorization code flow, nor others client_credentials", async () => {
  const res = await w.fetch("/auth/token", form({ grant_type: "client_credentials", client_id: APP.client_id }));
  refused({ res, body: await res.json() });
});

test("client_credentials with a granular scope the server cannot enforce is invalid_scope", async () => {
  refused(await token(await assertion(keys.ES384, "inline-backend"), { scope: "system/Observation.rs?category=laboratory&foo=bar" }), "invalid_scope", 400);
  const lab = await token(await assertion(keys.ES384, "inline-backend"), { scope: "system/Observation.rs?category=laboratory" });
  assert.equal(lab.res.status, 200, JSON.stringify(lab.body));
  assert.equal(lab.body.scope, "system/Observation.rs?category=laboratory");
});

async function call(path, clientAssertion, params) {
  const res = await w.fetch(path, form({ client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: clientAssertion, ...params }));
  const text = await res.text();
  return { res, body: text ? JSON.parse(text) : null };
}

test("private_key_jwt clients introspect and revoke; a backend access token can be revoked", async () => {
  const issued = (await token(await assertion(keys.ES384, "inline-backend"), { scope: "system/Patient.rs" })).body;
  // The assertion's aud may be the token URL or the endpoint's own URL.
  const seen = await call("/auth/introspect", await assertion(keys.ES384, "inline-backend", { aud: `${w.url}/auth/introspect` }), { token: issued.access_token });
  assert.equal(seen.res.status, 200, JSON.stringify(seen.body));
  assert.equal(seen.body.active, true);
  assert.equal(seen.body.client_id, "inline-backend");
  assert.equal(seen.body.scope, "system/Patient.rs");
  // Another key client is not told about it.
  const other = await call("/auth/introspect", await assertion(keys.ES384, "asymmetric-app"), { token: issued.access_token });
  assert.deepEqual(other.body, { active: false });
  const fhir = () => w.fetch("/fhir/Patient?_count=1", { headers: { Authorization: `Bearer ${issued.access_token}` } });
  assert.equal((await fhir()).status, 200);
  // Revocation by another client does nothing; by its own client, it ends the token.
  assert.equal((await call("/auth/revoke", await assertion(keys.ES384, "asymmetric-app"), { token: issued.access_token })).res.status, 200);
  assert.equal((await call("/auth/introspect", await assertion(keys.ES384, "inline-backend"), { token: issued.access_token })).body.active, true);
  const revoked = await call("/auth/revoke", await assertion(keys.ES384, "inline-backend", { aud: `${w.url}/auth/revoke` }), { token: issued.access_token });
  assert.equal(revoked.res.status, 200);
  assert.deepEqual((await call("/auth/introspect", await assertion(keys.ES384, "inline-backend"), { token: issued.access_token })).body, { active: false });
  const after = await fhir();
  assert.equal(after.status, 401);
  assert.match(after.headers.get("www-authenticate"), /error="invalid_token"/);
  // A replayed assertion is refused at these endpoints too.
  const once = await assertion(keys.ES384, "inline-backend");
  assert.equal((await call("/auth/introspect", once, { token: "x" })).res.status, 200);
  refused(await call("/auth/introspect", once, { token: "x" }));
});
