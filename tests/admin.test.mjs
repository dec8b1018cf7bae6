// The admin API: bearer-token authentication and server settings stored in KV.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";

let w;
before(async () => { w = await startWorker(); });
after(() => w.dispose());

test("no token: 401 with a bare Bearer challenge; wrong token: 401 invalid_token", async () => {
  const missing = await w.json("/admin/settings");
  assert.equal(missing.res.status, 401);
  assert.equal(missing.res.headers.get("www-authenticate"), 'Bearer realm="smart-edge admin"');
  assert.equal(missing.body.error, "invalid_request");
  const wrong = await w.json("/admin/settings", { headers: { Authorization: "Bearer nope" } });
  assert.equal(wrong.res.status, 401);
  assert.match(wrong.res.headers.get("www-authenticate"), /error="invalid_token"/);
  assert.equal(wrong.body.error, "invalid_token");
});

test("without ADMIN_TOKEN the admin API is off", async () => {
  const off = await startWorker({ bindings: { ADMIN_TOKEN: "" } });
  try {
    const { res, body } = await off.json("/admin/settings", { headers: adminHeaders() });
    assert.equal(res.status, 403);
    assert.equal(body.error, "access_denied");
  } finally {
    await off.dispose();
  }
});

test("settings: defaults, a validated update stored in KV, visible in metadata", async () => {
  const initial = await w.json("/admin/settings", { headers: adminHeaders() });
  assert.equal(initial.res.status, 200);
  assert.equal(initial.res.headers.get("cache-control"), "no-store");
  const registration = { open_registration: false, registration_token_hash: null, associated_endpoints: [], user_access_brand: null };
  assert.deepEqual(initial.body, { server_name: "smart-edge", ehr_origins: [], introspection_style: "rfc7662", refresh_grace_secs: 30, ...registration });

  const update = { server_name: "Demo General Hospital", ehr_origins: ["https://ehr.example.org"], introspection_style: "rfc7662", refresh_grace_secs: 30, ...registration };
  const put = await w.json("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify(update) });
  assert.equal(put.res.status, 200);
  assert.deepEqual(put.body, update);

  const stored = await w.mf.getKVNamespace("CONFIG").then((kv) => kv.get("config:server", "json"));
  assert.deepEqual(stored, { ...update, record_version: 1 }, "the value is in the KV namespace itself, with its record version");
  const meta = await w.json("/fhir/metadata");
  assert.equal(meta.body.implementation.description, "Demo General Hospital");
});

test("bad settings are refused with invalid_request and change nothing", async () => {
  const before = (await w.json("/admin/settings", { headers: adminHeaders() })).body;
  const bad = [
    "not json",
    "[]",
    JSON.stringify({ server_name: "" }),
    JSON.stringify({ ehr_origins: ["https://ehr.example.org/path"] }),
    JSON.stringify({ surprise: true }),
    JSON.stringify({ server_name: "x".repeat(20000) }),
    JSON.stringify({ refresh_grace_secs: 301 }),
    JSON.stringify({ introspection_style: "something" }),
  ];
  for (const body of bad) {
    const { res, body: err } = await w.json("/admin/settings", { method: "PUT", headers: adminHeaders(), body });
    assert.equal(res.status, 400, body.slice(0, 40));
    assert.equal(err.error, "invalid_request");
  }
  assert.deepEqual((await w.json("/admin/settings", { headers: adminHeaders() })).body, before);
});

test("client registration refuses unenforceable granular scopes and system/ scopes for interactive clients", async () => {
  const app = { client_id: "reg-app", client_name: "Reg", client_type: "public", redirect_uris: ["https://app.example/cb"] };
  for (const [scope, fragment] of [
    ["openid patient/Observation.rs?category=laboratory&foo=bar", /cannot be enforced/],
    ["openid patient/Observation.rs?_count=5", /cannot be enforced/],
    ["openid system/*.rs", /backend services only/],
  ]) {
    const res = await w.fetch("/admin/clients", { method: "POST", headers: adminHeaders(), body: JSON.stringify({ ...app, scope }) });
    assert.equal(res.status, 400, scope);
    const body = await res.json();
    assert.equal(body.error, "invalid_request");
    assert.match(body.error_description, fragment);
  }
  const ok = await w.fetch("/admin/clients", { method: "POST", headers: adminHeaders(), body: JSON.stringify({ ...app, scope: "openid patient/Observation.rs?category=laboratory", resource_server: true }) });
  assert.equal(ok.status, 201);
  const view = await ok.json();
  assert.equal(view.scope, "openid patient/Observation.rs?category=laboratory");
  assert.equal(view.resource_server, true);
});
