// Sandbox error simulation over HTTP: the admin API sets a test client's next failure
// (PUT /admin/clients/{id}/simulate), and the authorization endpoint, the token endpoint and
// the FHIR API answer it exactly as the real failure would — once — while nothing real changes
// (the code still exchanges, the refresh token still refreshes, the access token still works).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { seed, authorizeUrl, APP, REDIRECT, NED } from "./helpers/fixtures.mjs";
import { authorize, exchange, form } from "./helpers/flows.mjs";

const SANDBOX = { ...APP, client_id: "sandbox-app", client_name: "Sandbox App", test_client: true };
let w;
before(async () => {
  w = await startWorker();
  await seed(w, { clients: [APP, SANDBOX] });
});
after(() => w.dispose());

const simulate = (clientId, body, { method = "PUT", headers = adminHeaders({ "Content-Type": "application/json" }) } = {}) =>
  w.json(`/admin/clients/${clientId}/simulate`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

test("only a registered test client may have a simulation, set, read and cleared with the admin token", async () => {
  let { res, body } = await simulate("test-app", { at: "token", error: "invalid_grant" });
  assert.equal(res.status, 400);
  assert.equal(body.error, "invalid_request");
  assert.match(body.error_description, /test_client/);
  ({ res } = await simulate("nobody", { at: "token", error: "invalid_grant" }));
  assert.equal(res.status, 404);
  ({ res } = await simulate("sandbox-app", { at: "token", error: "invalid_grant" }, { headers: { "Content-Type": "application/json" } }));
  assert.equal(res.status, 401, "the admin token is required");
  ({ res, body } = await simulate("sandbox-app", { at: "token", error: "access_denied" }));
  assert.equal(res.status, 400, "an error the token endpoint cannot answer");
  assert.match(body.error_description, /invalid_grant/);
  ({ res, body } = await simulate("sandbox-app", { at: "everywhere", error: "server_error" }));
  assert.equal(res.status, 400);

  ({ res, body } = await simulate("sandbox-app", { at: "fhir", error: "server_error" }));
  assert.equal(res.status, 200);
  assert.deepEqual(body, { client_id: "sandbox-app", simulate: { at: "fhir", error: "server_error" } });
  ({ body } = await simulate("sandbox-app", undefined, { method: "GET", headers: adminHeaders() }));
  assert.deepEqual(body.simulate, { at: "fhir", error: "server_error" });
  ({ res, body } = await simulate("sandbox-app", undefined, { method: "DELETE", headers: adminHeaders() }));
  assert.equal(res.status, 200);
  assert.equal(body.simulate, null);
  const client = await w.json("/admin/clients/sandbox-app", { headers: adminHeaders() });
  assert.equal(client.body.test_client, true, "the registration shows the mark");
});

test("authorize: the simulated error is redirected with state and iss, once, and starts nothing", async () => {
  await simulate("sandbox-app", { at: "authorize", error: "access_denied" });
  const agent = new Agent(w.url);
  const result = await agent.go(authorizeUrl(w, { client_id: "sandbox-app" }));
  assert.ok(result.redirect, `a redirect, got ${result.res.status}`);
  assert.equal(`${result.redirect.origin}${result.redirect.pathname}`, REDIRECT);
  const q = result.redirect.searchParams;
  assert.equal(q.get("error"), "access_denied");
  assert.equal(q.get("state"), "state-123");
  assert.equal(q.get("iss"), w.url);
  assert.equal(q.get("code"), null);
  assert.equal(agent.cookies.size, 0, "no sign-in was started (no browser binding)");
  const next = await agent.go(authorizeUrl(w, { client_id: "sandbox-app" }));
  assert.ok(next.doc?.querySelector("#login-submit"), "one shot: the next request signs in");
});

test("token: each simulated error has its RFC 6749 §5.2 status and body; the code is not consumed", async () => {
  const { code, verifier } = await authorize(w, { client_id: "sandbox-app" });
  for (const [error, status] of [
    ["invalid_client", 401],
    ["invalid_grant", 400],
    ["invalid_scope", 400],
    ["temporarily_unavailable", 503],
  ]) {
    await simulate("sandbox-app", { at: "token", error });
    const { res, body } = await exchange(w, code, verifier, { client_id: "sandbox-app" });
    assert.equal(res.status, status, error);
    assert.equal(body.error, error);
    assert.equal(res.headers.get("cache-control"), "no-store");
    if (error === "invalid_client") assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="smart-edge"/);
    else assert.equal(res.headers.get("www-authenticate"), null);
  }
  const { res, body } = await exchange(w, code, verifier, { client_id: "sandbox-app" });
  assert.equal(res.status, 200, "the code still exchanges (once)");

  // A simulated refresh failure rotates nothing: the same refresh token refreshes afterwards.
  await simulate("sandbox-app", { at: "token", error: "invalid_grant" });
  const refresh = () => w.json("/auth/token", form({ grant_type: "refresh_token", refresh_token: body.refresh_token, client_id: "sandbox-app" }));
  let answer = await refresh();
  assert.equal(answer.res.status, 400);
  assert.equal(answer.body.error, "invalid_grant");
  answer = await refresh();
  assert.equal(answer.res.status, 200, "the refresh token was not rotated by the simulation");
  assert.notEqual(answer.body.refresh_token, body.refresh_token);
  const fhir = await w.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: `Bearer ${answer.body.access_token}` } });
  assert.equal(fhir.status, 200, "and the grant is alive");
});

test("fhir: expired_token is 401 invalid_token with its challenge, insufficient_scope 403, server_error 500 — once each", async () => {
  const { code, verifier } = await authorize(w, { client_id: "sandbox-app" });
  const { body: tokens } = await exchange(w, code, verifier, { client_id: "sandbox-app" });
  const read = () => w.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: `Bearer ${tokens.access_token}` } });

  await simulate("sandbox-app", { at: "fhir", error: "expired_token" });
  let res = await read();
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /^Bearer realm="smart-edge", error="invalid_token", error_description="the access token has expired/);
  let body = await res.json();
  assert.equal(body.resourceType, "OperationOutcome");
  assert.equal((await read()).status, 200, "one shot");

  await simulate("sandbox-app", { at: "fhir", error: "insufficient_scope" });
  res = await read();
  assert.equal(res.status, 403);
  assert.match(res.headers.get("www-authenticate"), /error="insufficient_scope"/);
  assert.equal((await res.json()).resourceType, "OperationOutcome");

  await simulate("sandbox-app", { at: "fhir", error: "server_error" });
  res = await read();
  assert.equal(res.status, 500);
  body = await res.json();
  assert.equal(body.resourceType, "OperationOutcome");
  assert.equal(body.issue[0].code, "exception");
  assert.equal((await read()).status, 200);

  // Another client's token never meets this client's simulation.
  await simulate("sandbox-app", { at: "fhir", error: "server_error" });
  const other = await authorize(w, {});
  const { body: otherTokens } = await exchange(w, other.code, other.verifier);
  assert.equal((await w.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: `Bearer ${otherTokens.access_token}` } })).status, 200);
  await simulate("sandbox-app", undefined, { method: "DELETE", headers: adminHeaders() });
});
