// Dynamic client registration (RFC 7591) and client configuration (RFC 7592) on the built
// Worker under workerd: openid-client 6's dynamicClientRegistration() registers a public and a
// confidential client, each then completes an authorization code flow; raw HTTP checks every
// refusal (status, error code, challenge) and read / replace / delete with the registration
// access token; the admin API takes the RFC 7591 names too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as oidc from "openid-client";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { seed, REDIRECT, PRACTITIONER, NED } from "./helpers/fixtures.mjs";

const INITIAL = "initial-access-token-for-the-tests-0123";
const SCOPE = "openid fhirUser offline_access launch/patient patient/*.rs";
const SETTINGS = { open_registration: true, registration_token_hash: `sha256:${createHash("sha256").update(INITIAL).digest("base64url")}` };

let w;
before(async () => {
  w = await startWorker();
  await seed(w, { clients: [] });
  await putSettings(SETTINGS);
});
after(() => w.dispose());

async function putSettings(settings) {
  const res = await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(settings) });
  assert.equal(res.status, 200, await res.text());
}

const insecure = { execute: [oidc.allowInsecureRequests] }; // plain http on loopback

/** Runs the user's part and the code exchange with openid-client; answers the token response. */
async function codeFlow(config) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    aud: `${w.url}/fhir`,
  });
  const agent = new Agent(w.url);
  let page = await agent.go(url.pathname + url.search);
  page = await agent.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: PRACTITIONER.password } });
  page = await agent.submit(page, `.patient-pick[value='${NED}']`);
  page = await agent.submit(page, "#approve");
  assert.ok(page.redirect, "redirected to the client");
  return oidc.authorizationCodeGrant(config, page.redirect, { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
}

const publicMetadata = () => ({
  client_name: "Registered SPA",
  redirect_uris: [REDIRECT],
  token_endpoint_auth_method: "none",
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
  scope: SCOPE,
});

test("openid-client registers a public client openly, which completes the code flow", async () => {
  const config = await oidc.dynamicClientRegistration(new URL(w.url), publicMetadata(), oidc.None(), insecure);
  const registered = config.clientMetadata();
  assert.ok(registered.client_id);
  assert.equal(registered.client_secret, undefined);
  assert.equal(registered.token_endpoint_auth_method, "none");
  assert.equal(registered.registration_client_uri, `${w.url}/auth/register/${registered.client_id}`);
  assert.ok(registered.registration_access_token);
  assert.ok(Math.abs(registered.client_id_issued_at - Date.now() / 1000) < 60);

  const tokens = await codeFlow(config);
  assert.equal(tokens.claims().sub, PRACTITIONER.username);
  assert.equal(tokens.patient, NED);
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);
});

test("openid-client registers a confidential client with the initial access token; its secret works once shown", async () => {
  const metadata = { ...publicMetadata(), client_name: "Registered web app", token_endpoint_auth_method: "client_secret_basic" };
  await assert.rejects(oidc.dynamicClientRegistration(new URL(w.url), metadata, undefined, insecure), (e) => (e.status ?? e.cause?.status) === 401);

  const config = await oidc.dynamicClientRegistration(new URL(w.url), metadata, undefined, { ...insecure, initialAccessToken: INITIAL });
  const registered = config.clientMetadata();
  assert.ok(registered.client_secret.length >= 32);
  assert.equal(registered.client_secret_expires_at, 0);
  const basic = new oidc.Configuration(config.serverMetadata(), registered.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(registered.client_secret));
  oidc.allowInsecureRequests(basic);
  const tokens = await codeFlow(basic);
  assert.ok(tokens.access_token);
  assert.equal((await oidc.tokenIntrospection(basic, tokens.access_token)).client_id, registered.client_id);

  // The admin API shows it, marked as registered, without the secret.
  const view = await (await w.fetch(`/admin/clients/${registered.client_id}`, { headers: adminHeaders() })).json();
  assert.equal(view.client_type, "confidential-symmetric");
  assert.equal(view.dynamic, true);
  assert.equal(view.secret_count, 1);
  assert.ok(!JSON.stringify(view).includes(registered.client_secret));
});

async function register(body, token) {
  const headers = { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const res = await w.fetch("/auth/register", { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { res, body: await res.json() };
}

test("refusals: RFC 7591 §3.2.2 codes with 400, RFC 6750 401s for the initial access token", async () => {
  const cases = [
    [{ redirect_uris: ["http://app.example/cb"] }, "invalid_redirect_uri"],
    [{ redirect_uris: [] }, "invalid_redirect_uri"],
    [{ grant_types: ["implicit"] }, "invalid_client_metadata"],
    [{ token_endpoint_auth_method: "tls_client_auth" }, "invalid_client_metadata"],
    [{ scope: "openid system/*.rs" }, "invalid_client_metadata"],
    [{ scope: "patient/Observation.rs?foo=bar" }, "invalid_client_metadata"],
    [{ redirect_uris: "https://app.example/cb" }, "invalid_client_metadata"],
    [{ software_statement: "not-a-jwt" }, "invalid_software_statement"],
    [{ software_statement: "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln" }, "unapproved_software_statement"],
  ];
  for (const [patch, code] of cases) {
    const { res, body } = await register({ ...publicMetadata(), ...patch });
    assert.equal(res.status, 400, JSON.stringify(patch));
    assert.equal(body.error, code, JSON.stringify(patch));
    assert.ok(body.error_description);
    assert.equal(res.headers.get("cache-control"), "no-store");
  }
  for (const text of ["{", "[]", ""]) {
    const { res, body } = await register(text);
    assert.equal(res.status, 400);
    assert.equal(body.error, "invalid_client_metadata");
  }

  // A confidential or backend client without the initial access token.
  const backend = { token_endpoint_auth_method: "private_key_jwt", grant_types: ["client_credentials"], jwks_uri: "https://svc.example/jwks", scope: "system/*.rs" };
  for (const metadata of [{ ...publicMetadata(), token_endpoint_auth_method: "client_secret_post" }, backend]) {
    const { res, body } = await register(metadata);
    assert.equal(res.status, 401);
    assert.equal(body.error, "invalid_token");
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="smart-edge registration"');
  }
  const { res: admitted, body: backendInfo } = await register(backend, "test-admin-token");
  assert.equal(admitted.status, 201, "the admin token is an initial access token");
  assert.deepEqual(backendInfo.grant_types, ["client_credentials"]);

  // A bad initial access token, even for a client that needs none.
  const { res, body } = await register(publicMetadata(), "wrong");
  assert.equal(res.status, 401);
  assert.equal(body.error, "invalid_token");
  assert.match(res.headers.get("www-authenticate"), /error="invalid_token"/);

  // Open registration off: a public client needs the token too.
  await putSettings({ ...SETTINGS, open_registration: false });
  try {
    assert.equal((await register(publicMetadata())).res.status, 401);
    assert.equal((await register(publicMetadata(), INITIAL)).res.status, 201);
  } finally {
    await putSettings(SETTINGS);
  }
});

test("RFC 7592: read, replace and delete with the registration access token", async () => {
  const { res: created, body: info } = await register({ ...publicMetadata(), token_endpoint_auth_method: "client_secret_post" }, INITIAL);
  assert.equal(created.status, 201);
  const uri = new URL(info.registration_client_uri).pathname;
  const as = (token, init = {}) => w.fetch(uri, { ...init, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } });

  let res = await as(info.registration_access_token);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("cache-control"), "no-store");
  let read = await res.json();
  assert.equal(read.client_id, info.client_id);
  assert.equal(read.client_secret, undefined, "the secret is shown once only");
  assert.equal(read.client_secret_expires_at, 0);
  assert.equal(read.registration_access_token, info.registration_access_token);
  assert.equal(read.registration_client_uri, info.registration_client_uri);

  for (const [token, path] of [["wrong", uri], [info.registration_access_token, "/auth/register/no-such-client"]]) {
    const bad = await w.fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(bad.status, 401);
    assert.equal((await bad.json()).error, "invalid_token");
    assert.match(bad.headers.get("www-authenticate"), /error="invalid_token"/);
  }
  const bare = await w.fetch(uri);
  assert.equal(bare.status, 401);
  assert.equal(bare.headers.get("www-authenticate"), 'Bearer realm="smart-edge registration"');

  const update = { ...publicMetadata(), token_endpoint_auth_method: "client_secret_post", client_id: info.client_id, client_name: "Renamed", redirect_uris: [REDIRECT, "https://app.example/second"] };
  res = await as(info.registration_access_token, { method: "PUT", body: JSON.stringify(update) });
  assert.equal(res.status, 200);
  read = await res.json();
  assert.equal(read.client_name, "Renamed");
  assert.deepEqual(read.redirect_uris, update.redirect_uris);
  for (const [patch, code] of [
    [{ client_id: "someone-else" }, "invalid_client_metadata"],
    [{ token_endpoint_auth_method: "none" }, "invalid_client_metadata"],
    [{ client_secret: "not-the-secret" }, "invalid_client_metadata"],
    [{ redirect_uris: ["http://evil.example/cb"] }, "invalid_redirect_uri"],
  ]) {
    res = await as(info.registration_access_token, { method: "PUT", body: JSON.stringify({ ...update, ...patch }) });
    assert.equal(res.status, 400, JSON.stringify(patch));
    assert.equal((await res.json()).error, code);
  }
  res = await as(info.registration_access_token, { method: "PUT", body: JSON.stringify({ ...update, client_secret: info.client_secret }) });
  assert.equal(res.status, 200, "the current secret may be sent back");

  // The secret still works at the token endpoint (client_secret_post): a wrong code, not a wrong client.
  const form = new URLSearchParams({ grant_type: "authorization_code", code: "x.y", redirect_uri: REDIRECT, code_verifier: "v".repeat(43), client_id: info.client_id, client_secret: info.client_secret });
  const tokenAnswer = await w.fetch("/auth/token", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: form });
  assert.equal((await tokenAnswer.json()).error, "invalid_grant");

  res = await as(info.registration_access_token, { method: "DELETE" });
  assert.equal(res.status, 204);
  assert.equal(await res.text(), "");
  res = await as(info.registration_access_token);
  assert.equal(res.status, 401, "a deleted client's configuration endpoint answers 401 (RFC 7592 §2.1)");
  const after = await w.fetch("/auth/token", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: form });
  assert.equal((await after.json()).error, "invalid_client");
  assert.equal((await w.fetch(`/admin/clients/${info.client_id}`, { headers: adminHeaders() })).status, 404);
});

test("the admin API accepts the RFC 7591 names besides client_type / client_secrets", async () => {
  const post = (body) => w.fetch("/admin/clients", { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  let res = await post({
    client_id: "std-names",
    client_name: "Standard names",
    token_endpoint_auth_method: "client_secret_post",
    grant_types: ["authorization_code", "refresh_token"],
    client_secret: "s".repeat(40),
    redirect_uris: [REDIRECT],
    scope: SCOPE,
    logo_uri: "https://app.example/logo.png",
    contacts: ["dev@app.example"],
  });
  assert.equal(res.status, 201);
  const view = await res.json();
  assert.equal(view.client_type, "confidential-symmetric");
  assert.equal(view.token_endpoint_auth_method, "client_secret_post");
  assert.equal(view.logo_uri, "https://app.example/logo.png");
  assert.equal(view.dynamic, false);
  res = await post({ client_id: "backend-std", client_name: "B", token_endpoint_auth_method: "private_key_jwt", grant_types: ["client_credentials"], jwks_uri: "https://svc.example/jwks", scope: "system/*.rs" });
  assert.equal(res.status, 201);
  assert.equal((await res.json()).client_type, "backend");
  res = await post({ client_id: "clash", client_name: "C", client_type: "public", token_endpoint_auth_method: "client_secret_basic", redirect_uris: [REDIRECT], scope: SCOPE });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, "invalid_request");
});
