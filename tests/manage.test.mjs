// The management page: a signed-in user sees the applications they granted access to, with
// scopes and dates, and revokes one; its tokens stop working.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { seed, APP, PRACTITIONER } from "./helpers/fixtures.mjs";
import { authorize, exchange, refresh } from "./helpers/flows.mjs";

let w;
before(async () => {
  w = await startWorker();
  await seed(w, { clients: [APP, { ...APP, client_id: "second-app", client_name: "Second App" }] });
});
after(() => w.dispose());

test("management_endpoint is advertised", async () => {
  const { body } = await w.json("/fhir/.well-known/smart-configuration");
  assert.equal(body.management_endpoint, `${w.url}/auth/manage`);
});

test("the user sees each app with its scopes and date, and revoking one ends its tokens only", async () => {
  const agent = new Agent(w.url);
  const first = await authorize(w, { agent });
  const firstTokens = (await exchange(w, first.code, first.verifier)).body;
  const second = await authorize(w, { agent, client_id: "second-app" });
  const secondTokens = (await exchange(w, second.code, second.verifier, { client_id: "second-app" })).body;

  let page = await agent.go("/auth/manage");
  assert.equal(page.res.status, 200);
  assert.match(page.res.headers.get("content-security-policy"), /frame-ancestors 'none'/);
  const rows = page.doc.querySelectorAll(".grant-row");
  assert.equal(rows.length, 2);
  assert.match(rows.map((r) => r.text).join(" "), /Second App[\s\S]*Test App/);
  assert.match(rows[1].text, /Read and search all kinds of health data of the open patient/);
  assert.match(rows[1].text, /Since \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/);

  const target = rows.find((r) => r.text.includes("Test App")).getAttribute("data-grant-id");
  const forged = await agent.submit(page, `.revoke-grant[value='${target}']`, { fill: { csrf: "forged" } });
  assert.equal(forged.res.status, 403);
  page = await agent.submit(page, `.revoke-grant[value='${target}']`);
  assert.equal(page.doc.querySelectorAll(".grant-row").length, 1);
  assert.equal((await refresh(w, firstTokens.refresh_token)).body.error, "invalid_grant");
  assert.equal((await refresh(w, secondTokens.refresh_token)).res.status, 200);
});

test("without a session the page asks to sign in; a wrong password is refused", async () => {
  const agent = new Agent(w.url);
  let page = await agent.go("/auth/manage");
  assert.ok(page.doc.querySelector("#login-submit"));
  const wrong = await agent.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: "wrong-password" } });
  assert.equal(wrong.res.status, 401);
  page = await agent.submit(wrong, "#login-submit", { fill: { username: PRACTITIONER.username, password: PRACTITIONER.password } });
  assert.equal(page.res.status, 200);
  assert.ok(page.doc.querySelector("h1").text.includes("Applications with access"));
  const noCsrf = await new Agent(w.url).go("/auth/manage/login", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "username=x&password=y" });
  assert.equal(noCsrf.res.status, 403);
});
