// SMART authorization on workerd: standalone and EHR launches driven through the real HTML
// forms (cookies kept, redirects followed) up to the redirect carrying code and state, and
// every error path with its exact `error`.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { seed, authorizeUrl, grantOf, APP, REDIRECT, PRACTITIONER, PATIENT_USER, NED, BUSTER, PASSWORD } from "./helpers/fixtures.mjs";

let w;
before(async () => {
  w = await startWorker();
  await seed(w);
});
after(() => w.dispose());

const login = (agent, page, user = PRACTITIONER) => agent.submit(page, "#login-submit", { fill: { username: user.username, password: user.password } });

function expectRedirect(result, { error, state = "state-123" } = {}) {
  assert.ok(result.redirect, `expected a redirect to the client, got ${result.res.status}: ${result.html?.slice(0, 300)}`);
  assert.equal(`${result.redirect.origin}${result.redirect.pathname}`, REDIRECT);
  const q = result.redirect.searchParams;
  assert.equal(q.get("state"), state);
  assert.equal(q.get("iss"), w.url, "RFC 9207 iss");
  if (error) {
    assert.equal(q.get("error"), error, q.get("error_description"));
    assert.equal(q.get("code"), null);
  } else {
    assert.match(q.get("code"), /^[0-9a-f]{64}\.[A-Za-z0-9_-]{43}$/);
  }
  return q;
}

describe("standalone launch", () => {
  test("login, patient picker, encounter picker, consent with a scope unticked, code", async () => {
    const agent = new Agent(w.url);
    let page = await agent.go(authorizeUrl(w, { scope: "launch/patient launch/encounter openid fhirUser patient/*.rs", nonce: "n-1" }));
    assert.equal(page.res.status, 200);
    assert.equal(page.url.pathname, "/auth/sign-in");
    for (const id of ["#username", "#password", "#login-submit"]) assert.ok(page.doc.querySelector(id), id);
    assert.ok(page.doc.querySelector("label[for=username]") && page.doc.querySelector("label[for=password]"), "accessible labels");
    const csp = page.res.headers.get("content-security-policy");
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /form-action 'self' https:\/\/app\.example/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.res.headers.get("cache-control"), "no-store");
    assert.equal(page.res.headers.get("x-content-type-options"), "nosniff");
    const cookies = page.res.headers.getSetCookie?.() ?? [];
    assert.equal(cookies.length, 0, "the browser cookie was set on /auth/authorize");
    assert.ok(agent.cookies.has("se_browser"));

    page = await login(agent, page);
    const picks = page.doc.querySelectorAll(".patient-pick");
    assert.equal(picks.length, 3, "a practitioner sees every patient");
    assert.ok(picks.some((p) => p.text.includes("Ned Hintz")));

    page = await agent.submit(page, `.patient-pick[value='${NED}']`);
    const encounters = page.doc.querySelectorAll(".encounter-pick");
    assert.ok(encounters.length >= 2);
    const encounterId = encounters[0].getAttribute("value");

    page = await agent.submit(page, `.encounter-pick[value='${encounterId}']`);
    assert.match(page.doc.querySelector("h1").text, /Allow Test App/);
    assert.ok(page.html.includes("Ned Hintz"), "the consent page names the patient");
    assert.equal(page.doc.querySelectorAll("input[type=checkbox][name=scope]").length, 5);
    assert.ok(page.doc.querySelector("#approve") && page.doc.querySelector("#deny"));

    const result = await agent.submit(page, "#approve", { uncheck: ["fhirUser"] });
    const q = expectRedirect(result);
    const grant = await grantOf(w, q.get("code"));
    assert.equal(grant.state, "code_issued");
    assert.equal(grant.grant.scope, "launch/patient launch/encounter openid patient/*.rs", "fhirUser was unticked");
    assert.deepEqual(grant.grant.context, { patient: NED, encounter: encounterId, need_patient_banner: true });
    assert.equal(grant.grant.nonce, "n-1");
    assert.equal(grant.grant.user.fhir_user, PRACTITIONER.fhir_user);
    assert.ok(!JSON.stringify(grant).includes(q.get("code").split(".")[1]), "only the code's hash is stored");
  });

  test("a patient user is offered only their own record and cannot pick another", async () => {
    const agent = new Agent(w.url);
    let page = await login(agent, await agent.go(authorizeUrl(w)), PATIENT_USER);
    const picks = page.doc.querySelectorAll(".patient-pick");
    assert.deepEqual(picks.map((p) => p.getAttribute("value")), [NED]);
    const forged = await agent.submit(page, ".patient-pick", { fill: { patient: BUSTER } });
    assert.equal(forged.res.status, 403);
    page = await agent.submit(page, ".patient-pick");
    const q = expectRedirect(await agent.submit(page, "#approve"));
    assert.equal((await grantOf(w, q.get("code"))).grant.context.patient, NED);
  });

  test("the session is reused by the next authorization; prompt=login asks again; prompt=none works only with it", async () => {
    const agent = new Agent(w.url);
    const none = await agent.go(authorizeUrl(w, { prompt: "none" }));
    expectRedirect(none, { error: "login_required" });

    let page = await login(agent, await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs" })));
    expectRedirect(await agent.submit(page, "#approve"));

    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs" }));
    assert.ok(page.doc.querySelector("#approve"), "no login page the second time");
    assert.equal(page.doc.querySelector("#username"), null);

    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", prompt: "login" }));
    assert.ok(page.doc.querySelector("#username"), "prompt=login shows the login page");

    expectRedirect(await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", prompt: "none" })), { error: "consent_required" });
  });

  test("max_age: a session older than max_age signs in again (max_age=0 always); prompt=none then hears login_required", async () => {
    const agent = new Agent(w.url);
    let page = await login(agent, await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs" })));
    expectRedirect(await agent.submit(page, "#approve"));
    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", max_age: "3600" }));
    assert.ok(page.doc.querySelector("#approve"), "a session of a few seconds is recent enough for max_age=3600");
    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", max_age: "0" }));
    assert.ok(page.doc.querySelector("#username"), "max_age=0 shows the login page");
    // Two seconds on, a session is older than max_age=1.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", max_age: "1" }));
    assert.ok(page.doc.querySelector("#username"), "an older session: the login page");
    expectRedirect(await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", max_age: "1", prompt: "none" })), { error: "login_required" });
  });

  test("login_hint prefills the username (escaped) and never switches users silently", async () => {
    const agent = new Agent(w.url);
    let page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", login_hint: PRACTITIONER.username }));
    assert.equal(page.doc.querySelector("#username").getAttribute("value"), PRACTITIONER.username);
    const odd = await new Agent(w.url).go(authorizeUrl(w, { login_hint: '"><b id="x">' }));
    assert.equal(odd.doc.querySelector("#x"), null, "no markup from the hint");
    assert.equal(odd.doc.querySelector("#username").getAttribute("value"), '"><b id="x">');
    // Signed in as dr.test, a hint for ned shows the login page prefilled with ned.
    page = await login(agent, page);
    expectRedirect(await agent.submit(page, "#approve"));
    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", login_hint: PATIENT_USER.username }));
    assert.equal(page.doc.querySelector("#username")?.getAttribute("value"), PATIENT_USER.username, "the session is not adopted for another user");
    page = await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs", login_hint: PRACTITIONER.username }));
    assert.ok(page.doc.querySelector("#approve"), "a hint for the session's own user adopts it");
  });

  test("consent policies: remember asks once per user and client, pre-approved never asks", async () => {
    const remember = { ...APP, client_id: "remembering-app", consent: "remember" };
    const trusted = { ...APP, client_id: "trusted-app", consent: "pre-approved" };
    for (const client of [remember, trusted]) {
      const res = await w.fetch("/admin/clients", { method: "POST", headers: adminHeaders(), body: JSON.stringify(client) });
      assert.equal(res.status, 201);
    }
    const agent = new Agent(w.url);
    const scope = "openid fhirUser patient/*.rs";
    let page = await login(agent, await agent.go(authorizeUrl(w, { client_id: remember.client_id, scope })));
    assert.ok(page.doc.querySelector("#approve"), "asked the first time");
    expectRedirect(await agent.submit(page, "#approve", { uncheck: ["fhirUser"] }));
    expectRedirect(await agent.go(authorizeUrl(w, { client_id: remember.client_id, scope: "openid patient/*.rs" })));
    page = await agent.go(authorizeUrl(w, { client_id: remember.client_id, scope }));
    assert.ok(page.doc.querySelector("#approve"), "asked again for a scope the user had unticked");

    const q = expectRedirect(await agent.go(authorizeUrl(w, { client_id: trusted.client_id, scope })));
    assert.equal((await grantOf(w, q.get("code"))).grant.scope, scope);
  });

  test("deny sends access_denied with the state, and the closed grant leaves no storage behind", async () => {
    const agent = new Agent(w.url);
    let page = await login(agent, await agent.go(authorizeUrl(w, { scope: "openid patient/*.rs" })));
    const id = page.url.searchParams.get("interaction");
    assert.equal((await grantOf(w, `${id}.x`)).state, "interaction");
    expectRedirect(await agent.submit(page, "#deny"), { error: "access_denied" });
    await new Promise((r) => setTimeout(r, 2500)); // the object's alarm runs one second later
    assert.equal(await grantOf(w, `${id}.x`), null, "the record is deleted");
  });

  test("POST to the authorization endpoint works like GET (authorize-post)", async () => {
    const agent = new Agent(w.url);
    const params = new URL(authorizeUrl(w), w.url).searchParams;
    const page = await agent.go("/auth/authorize", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: params.toString() });
    assert.ok(page.doc.querySelector("#username"));
    const wrongType = await agent.go("/auth/authorize", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    assert.equal(wrongType.res.status, 415);
  });
});

describe("EHR launch", () => {
  async function createLaunch(body) {
    const res = await w.fetch("/auth/ehr/launch", { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
    return { res, body: await res.json() };
  }

  test("the EHR API returns launch and URL; the launch carries its context to the grant", async () => {
    const context = {
      client_id: APP.client_id,
      patient: NED,
      encounter: "enc-1",
      fhirContext: [{ reference: `Patient/${NED}`, role: "launch" }],
      intent: "reconcile-medications",
      need_patient_banner: false,
      smart_style_url: "https://ehr.example/style.json",
      tenant: "t-1",
    };
    const { res, body } = await createLaunch(context);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(body.expires_in, 300);
    const url = new URL(body.launch_url);
    assert.equal(`${url.origin}${url.pathname}`, APP.launch_uri);
    assert.equal(url.searchParams.get("iss"), `${w.url}/fhir`);
    assert.equal(url.searchParams.get("launch"), body.launch);

    const agent = new Agent(w.url);
    let page = await agent.go(authorizeUrl(w, { launch: body.launch, scope: "launch openid patient/*.rs" }));
    page = await login(agent, page);
    assert.ok(page.doc.querySelector("#approve"), "no picker: the EHR chose the patient");
    const q = expectRedirect(await agent.submit(page, "#approve"));
    const grant = (await grantOf(w, q.get("code"))).grant;
    const { client_id, ...expected } = context;
    assert.deepEqual(grant.context, expected);
    assert.equal(grant.scope, "launch openid patient/*.rs");
  });

  test("a client without launch_uri gets the launch value and no launch_url; the value works", async () => {
    const { launch_uri, ...noLaunchUri } = { ...APP, client_id: "no-launch-uri-app" };
    assert.ok(launch_uri);
    const registered = await w.fetch("/admin/clients", { method: "POST", headers: adminHeaders(), body: JSON.stringify(noLaunchUri) });
    assert.equal(registered.status, 201, await registered.text());
    const { res, body } = await createLaunch({ client_id: "no-launch-uri-app", patient: NED });
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.deepEqual(Object.keys(body).sort(), ["expires_in", "launch"]);
    const agent = new Agent(w.url);
    let page = await agent.go(authorizeUrl(w, { client_id: "no-launch-uri-app", launch: body.launch, scope: "launch openid patient/*.rs" }));
    page = await login(agent, page);
    const q = expectRedirect(await agent.submit(page, "#approve"));
    assert.equal((await grantOf(w, q.get("code"))).grant.context.patient, NED);
  });

  test("a launch for another client, a forged or a garbled launch is refused with invalid_request", async () => {
    await w.fetch("/admin/clients", { method: "POST", headers: adminHeaders(), body: JSON.stringify({ ...APP, client_id: "other-app" }) });
    const other = (await createLaunch({ client_id: "other-app", patient: NED })).body.launch;
    const [h, p] = other.split(".");
    const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, "base64url")), aud: APP.client_id })).toString("base64url");
    for (const launch of [other, `${h}.${forgedPayload}.${other.split(".")[2]}`, "not-a-launch"]) {
      const result = await new Agent(w.url).go(authorizeUrl(w, { launch, scope: "launch openid" }));
      expectRedirect(result, { error: "invalid_request" });
    }
  });

  test("a launch is single use: the second authorization with the same launch is invalid_request", async () => {
    const { body } = await createLaunch({ client_id: APP.client_id, patient: NED });
    const agent = new Agent(w.url);
    const page = await agent.go(authorizeUrl(w, { launch: body.launch, scope: "launch openid patient/*.rs" }));
    assert.ok(page.doc.querySelector("#username"), "the first use goes on to the login page");
    const again = await new Agent(w.url).go(authorizeUrl(w, { launch: body.launch, scope: "launch openid patient/*.rs" }));
    const q = expectRedirect(again, { error: "invalid_request" });
    assert.match(q.get("error_description"), /already used/);
    // Even the browser that used it first cannot start a second authorization with it.
    expectRedirect(await agent.go(authorizeUrl(w, { launch: body.launch, scope: "launch openid patient/*.rs" })), { error: "invalid_request" });
  });

  test("a patient user never completes a launch about another patient (access_denied, no code)", async () => {
    const { body } = await createLaunch({ client_id: APP.client_id, patient: BUSTER });
    const agent = new Agent(w.url);
    const page = await agent.go(authorizeUrl(w, { launch: body.launch, scope: "launch openid patient/*.rs" }));
    const q = expectRedirect(await login(agent, page, PATIENT_USER), { error: "access_denied" });
    assert.match(q.get("error_description"), /own record/);
    // ned's session is not adopted by a later launch about Buster either: it asks who signs in.
    const later = await createLaunch({ client_id: APP.client_id, patient: BUSTER });
    const next = await agent.go(authorizeUrl(w, { launch: later.body.launch, scope: "launch openid patient/*.rs" }));
    assert.ok(next.doc.querySelector("#username"), "login page, not ned's session");
    expectRedirect(await login(agent, next, PATIENT_USER), { error: "access_denied" });
  });

  test("a launch made for the EHR's user is completed by that user only", async () => {
    const forDoctor = await createLaunch({ client_id: APP.client_id, user: PRACTITIONER.username, patient: BUSTER });
    assert.equal(forDoctor.res.status, 201, JSON.stringify(forDoctor.body));
    const other = { username: "other.doctor", display_name: "Dr. Other", fhir_user: "Practitioner/other-1", password: PASSWORD };
    assert.equal((await w.fetch("/admin/users", { method: "POST", headers: adminHeaders(), body: JSON.stringify(other) })).status, 201);
    const wrong = new Agent(w.url);
    let page = await wrong.go(authorizeUrl(w, { launch: forDoctor.body.launch, scope: "launch openid patient/*.rs" }));
    const denied = expectRedirect(await login(wrong, page, other), { error: "access_denied" });
    assert.match(denied.get("error_description"), /another user/);

    const again = await createLaunch({ client_id: APP.client_id, user: PRACTITIONER.username, patient: BUSTER });
    const right = new Agent(w.url);
    page = await login(right, await right.go(authorizeUrl(w, { launch: again.body.launch, scope: "launch openid patient/*.rs" })));
    const q = expectRedirect(await right.submit(page, "#approve"));
    const grant = (await grantOf(w, q.get("code"))).grant;
    assert.equal(grant.user.username, PRACTITIONER.username);
    assert.equal(grant.context.patient, BUSTER);
  });

  test("the EHR API checks its caller and its input", async () => {
    const anonymous = await w.fetch("/auth/ehr/launch", { method: "POST", body: "{}" });
    assert.equal(anonymous.status, 401);
    for (const [body, fragment] of [
      [{ client_id: "nobody" }, "no such client_id"],
      [{ client_id: APP.client_id, patient: "bad id!" }, "FHIR ids"],
      [{ client_id: APP.client_id, fhirContext: [{ role: "x" }] }, "fhirContext"],
      [{ client_id: APP.client_id, unexpected: 1 }, "unknown field"],
      [{ client_id: APP.client_id, user: "nobody-here" }, "no such user"],
      [{ client_id: APP.client_id, user: "bad user!" }, "username"],
    ]) {
      const { res, body: err } = await createLaunch(body);
      assert.equal(res.status, 400);
      assert.equal(err.error, "invalid_request");
      assert.match(err.error_description, new RegExp(fragment));
    }
  });
});

describe("granular scopes the server cannot enforce (issue 8, item 1)", () => {
  const LAB_SCOPE = "patient/Observation.rs?category=laboratory";
  const LAB = { ...APP, client_id: "lab-only-app", scope: `launch/patient openid ${LAB_SCOPE}`, consent: "remember" };

  test("asking for a constraint the server cannot enforce is invalid_scope, even after a remembered consent", async () => {
    const res = await w.fetch("/admin/clients", { method: "POST", headers: adminHeaders(), body: JSON.stringify(LAB) });
    assert.equal(res.status, 201);
    for (const scope of [`openid ${LAB_SCOPE}&foo=bar`, "openid patient/Observation.rs?_count=5", "openid patient/Observation.rs?code:text=x"]) {
      expectRedirect(await new Agent(w.url).go(authorizeUrl(w, { client_id: LAB.client_id, scope })), { error: "invalid_scope" });
    }
    // The user approves the enforceable scope once (remembered) ...
    const agent = new Agent(w.url);
    let page = await login(agent, await agent.go(authorizeUrl(w, { client_id: LAB.client_id, scope: `openid ${LAB_SCOPE}` })));
    const q = expectRedirect(await agent.submit(page, "#approve"));
    assert.equal((await grantOf(w, q.get("code"))).grant.scope, `openid ${LAB_SCOPE}`);
    // ... which never stretches to the wider one.
    const widened = await agent.go(authorizeUrl(w, { client_id: LAB.client_id, scope: `openid ${LAB_SCOPE}&foo=bar` }));
    expectRedirect(widened, { error: "invalid_scope" });
  });
});

describe("registrations stored before the scope rules (issue 8)", () => {
  test("a stored interactive client's system/ and unenforceable scopes are never granted", async () => {
    // Written straight into KV, as an older version could have stored it.
    const legacy = {
      client_id: "legacy-app", client_name: "Legacy", client_type: "public", redirect_uris: [REDIRECT], launch_uri: null, jwks: null, jwks_uri: null,
      secret_hashes: [], access_token_lifetime: 3600, refresh_token_lifetime: 86400, consent: "pre-approved",
      scope: "openid patient/*.rs system/*.rs patient/Observation.rs?foo=bar",
    };
    await (await w.mf.getKVNamespace("CONFIG")).put("client:legacy-app", JSON.stringify(legacy));
    const agent = new Agent(w.url);
    const page = await login(agent, await agent.go(authorizeUrl(w, { client_id: "legacy-app", scope: "openid system/*.rs patient/*.rs" })));
    const q = expectRedirect(page);
    assert.equal((await grantOf(w, q.get("code"))).grant.scope, "openid patient/*.rs", "system/*.rs dropped");
    expectRedirect(await agent.go(authorizeUrl(w, { client_id: "legacy-app", scope: "system/*.rs" })), { error: "invalid_scope" });
    const narrowed = expectRedirect(await agent.go(authorizeUrl(w, { client_id: "legacy-app", scope: "openid patient/Observation.rs" })));
    assert.equal((await grantOf(w, narrowed.get("code"))).grant.scope, "openid patient/Observation.rs", "not narrowed into ?foo=bar");
  });
});

describe("authorization errors", () => {
  test("errors before the client and redirect URI are verified are shown, never redirected", async () => {
    const cases = [
      { client_id: undefined },
      { client_id: "unknown-app" },
      { redirect_uri: undefined },
      { redirect_uri: "https://evil.example/callback" },
      { redirect_uri: `${REDIRECT}/` },
    ];
    for (const params of cases) {
      const res = await w.fetch(authorizeUrl(w, params), { redirect: "manual" });
      assert.equal(res.status, 400, JSON.stringify(params));
      assert.equal(res.headers.get("location"), null);
      assert.match(res.headers.get("content-type"), /^text\/html/);
      assert.match(res.headers.get("content-security-policy"), /default-src 'none'/);
      assert.match(await res.text(), /id="error"/);
    }
    const duplicate = await w.fetch(`${authorizeUrl(w)}&redirect_uri=${encodeURIComponent(REDIRECT)}`, { redirect: "manual" });
    assert.equal(duplicate.status, 400);
    assert.equal(duplicate.headers.get("location"), null);
    const huge = await w.fetch(authorizeUrl(w, { state: "x".repeat(20000) }), { redirect: "manual" });
    assert.equal(huge.status, 400);
    assert.equal(huge.headers.get("location"), null);
  });

  test("errors after are redirected with the exact error, the state and iss", async () => {
    const cases = [
      [{ response_type: undefined }, "invalid_request"],
      [{ response_type: "token" }, "unsupported_response_type"],
      [{ code_challenge_method: undefined }, "invalid_request"],
      [{ code_challenge_method: "plain" }, "invalid_request"],
      [{ code_challenge: undefined }, "invalid_request"],
      [{ code_challenge: "too-short" }, "invalid_request"],
      [{ aud: undefined }, "invalid_request"],
      [{ aud: "https://other.example/fhir" }, "invalid_request"],
      [{ scope: undefined }, "invalid_scope"],
      [{ scope: "patient/Observation.sr" }, "invalid_scope"],
      [{ scope: "system/*.rs" }, "invalid_scope"],
      [{ request: "eyJhbGciOiJub25lIn0.e30." }, "request_not_supported"],
      [{ prompt: "none login" }, "invalid_request"],
      [{ max_age: "-1" }, "invalid_request"],
      [{ max_age: "1.5" }, "invalid_request"],
      [{ max_age: "soon" }, "invalid_request"],
    ];
    for (const [params, error] of cases) {
      expectRedirect(await new Agent(w.url).go(authorizeUrl(w, params)), { error });
    }
    const dupState = await new Agent(w.url).go(`${authorizeUrl(w)}&scope=openid`);
    expectRedirect(dupState, { error: "invalid_request" });
    const noState = await new Agent(w.url).go(authorizeUrl(w, { state: undefined }));
    assert.equal(noState.redirect.searchParams.get("error"), "invalid_request");
    assert.equal(noState.redirect.searchParams.get("state"), null);
  });

  test("wrong passwords are refused, and repeated failures throttle the username", async () => {
    const agent = new Agent(w.url);
    let page = await agent.go(authorizeUrl(w));
    const user = { username: "throttled", display_name: "T", fhir_user: "Practitioner/t1", password: PASSWORD };
    await w.fetch("/admin/users", { method: "POST", headers: adminHeaders(), body: JSON.stringify(user) });
    for (let i = 0; i < 5; i++) {
      page = await login(agent, page, { ...user, password: "wrong-password" });
      assert.equal(page.res.status, 401);
      assert.match(page.doc.querySelector("#login-error").text, /not correct/);
    }
    page = await login(agent, page, user);
    assert.equal(page.res.status, 429, "locked even with the right password");
    assert.ok(Number(page.res.headers.get("retry-after")) > 0);
    const unknown = await login(agent, page, { username: "nobody", password: "whatever-1" });
    assert.equal(unknown.res.status, 401);
    assert.match(unknown.doc.querySelector("#login-error").text, /not correct/, "same answer as a wrong password");
  });

  test("failures from another browser cannot lock out a browser that signed in as the user before", async () => {
    const victim = { username: "victim", display_name: "V", fhir_user: "Practitioner/v1", password: PASSWORD };
    await w.fetch("/admin/users", { method: "POST", headers: adminHeaders(), body: JSON.stringify(victim) });
    const usual = new Agent(w.url);
    assert.ok((await login(usual, await usual.go(authorizeUrl(w)), victim)).doc.querySelector(".patient-pick"), "signed in once");
    // Someone else, from the same address, fails until locked.
    const attacker = new Agent(w.url);
    let page = await attacker.go(authorizeUrl(w));
    for (let i = 0; i < 5; i++) page = await login(attacker, page, { ...victim, password: "wrong-password" });
    assert.equal((await login(attacker, page, victim)).res.status, 429, "the attacker's source is locked");
    // The user's usual browser still signs in.
    const again = await login(usual, await usual.go(authorizeUrl(w, { prompt: "login" })), victim);
    assert.equal(again.res.status, 200, again.html?.slice(0, 300));
    assert.ok(again.doc.querySelector(".patient-pick"), "past the login page");
  });

  test("trying unknown usernames creates no account object per name", async () => {
    const accounts = await w.mf.getDurableObjectNamespace("ACCOUNTS");
    const names = Array.from({ length: 12 }, (_, i) => `nobody-${i}-${Date.now()}`);
    const agent = new Agent(w.url);
    let page = await agent.go(authorizeUrl(w));
    for (const username of names) {
      page = await login(agent, page, { username, password: "whatever-1" });
      assert.equal(page.res.status, 401);
    }
    const dir = join(w.persistTo, "do", "-Account");
    for (const username of names) {
      assert.ok(!existsSync(join(dir, `${accounts.idFromName(username)}.sqlite`)), `an object for ${username}`);
    }
    assert.ok(existsSync(dir) && readdirSync(dir).some((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite"), "the check looks at the right place");
  });

  test("a form with a forged CSRF token, or from another browser, is refused", async () => {
    const agent = new Agent(w.url);
    const page = await agent.go(authorizeUrl(w));
    const forged = await agent.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: PASSWORD, csrf: "forged" } });
    assert.equal(forged.res.status, 403);
    const thief = new Agent(w.url);
    thief.cookies.set("se_browser", "A".repeat(43));
    const stolen = await thief.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: PASSWORD } });
    assert.equal(stolen.res.status, 403);
    assert.match(stolen.html, /another browser/);
    const noCookie = await new Agent(w.url).go(page.url.pathname + page.url.search);
    assert.equal(noCookie.res.status, 400);
    const bogus = await agent.go("/auth/sign-in?interaction=zz");
    assert.equal(bogus.res.status, 404);
  });
});

test("smart-configuration lists the launch, client and permission capabilities", async () => {
  const { body } = await w.json("/fhir/.well-known/smart-configuration");
  assert.equal(body.authorization_endpoint, `${w.url}/auth/authorize`);
  assert.deepEqual(body.response_types_supported, ["code"]);
  for (const capability of ["launch-ehr", "launch-standalone", "authorize-post", "client-public", "context-ehr-patient",
    "context-standalone-patient", "context-standalone-encounter", "permission-v1", "permission-v2", "permission-patient", "permission-user"]) {
    assert.ok(body.capabilities.includes(capability), capability);
  }
  const meta = await w.json("/fhir/metadata");
  const uris = meta.body.rest[0].security.extension[0].extension;
  assert.deepEqual(uris.find((u) => u.url === "authorize"), { url: "authorize", valueUri: `${w.url}/auth/authorize` });
});
