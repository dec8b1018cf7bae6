// The EHR launch portal (/ehr/ → /auth/portal) on workerd, driven through its HTML forms the
// way a browser without JavaScript would: the server's own sign-in, the patient list (search
// by name, paging), the launch it creates (the EHR launch API's path: bound to the signed-in
// user, the patient and the encounter, single use), its CSRF token, a patient user's view,
// and garbage input. The whole path in a browser (portal → lab-viewer embedded → chart) and
// the portal's screenshot are in tests/demo.test.mjs.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startWorker, adminHeaders, tempDir, ADMIN_TOKEN, ROOT } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { seed, authorizeUrl, grantOf, APP, REDIRECT, PRACTITIONER, PATIENT_USER, NED, BUSTER, PASSWORD } from "./helpers/fixtures.mjs";

let w;
const OTHER = { username: "other.doctor", display_name: "Dr. Other", fhir_user: "Practitioner/other-1", password: PASSWORD };
const PAGED = 25; // more than one page (20) of "Pagetest" patients

before(async () => {
  w = await startWorker();
  await seed(w, { users: [PRACTITIONER, PATIENT_USER, OTHER] });
  const entry = Array.from({ length: PAGED }, (_, i) => {
    const id = `page-test-${String(i).padStart(2, "0")}`;
    return {
      resource: { resourceType: "Patient", id, name: [{ family: "Pagetest", given: [`P${i}`] }], gender: i % 2 ? "male" : "female", birthDate: "1990-01-01" },
      request: { method: "PUT", url: `Patient/${id}` },
    };
  });
  const res = await w.fetch("/admin/fhir/bundle", { method: "POST", headers: adminHeaders({ "Content-Type": "application/fhir+json" }), body: JSON.stringify({ resourceType: "Bundle", type: "transaction", entry }) });
  assert.equal(res.status, 200, await res.text());
});
after(() => w.dispose());

/** Signs in through the portal's sign-in page; returns the portal page. */
async function signIn(user = PRACTITIONER) {
  const agent = new Agent(w.url);
  const form = await agent.go("/ehr/");
  assert.equal(form.res.status, 200);
  const page = await agent.submit(form, "#login-submit", { fill: { username: user.username, password: user.password } });
  assert.equal(page.res.status, 200, page.html?.slice(0, 300));
  return { agent, page };
}

const rows = (page) => page.doc.querySelectorAll(".patient-row").map((r) => r.getAttribute("data-patient-id"));
const csrfOf = (page) => page.doc.querySelector("input[name=csrf]").getAttribute("value");

function expectRedirect(result, { error } = {}) {
  assert.ok(result.redirect, `expected a redirect to the client, got ${result.res.status}: ${result.html?.slice(0, 300)}`);
  assert.equal(`${result.redirect.origin}${result.redirect.pathname}`, REDIRECT);
  const q = result.redirect.searchParams;
  if (error) assert.equal(q.get("error"), error, q.get("error_description"));
  else assert.ok(q.get("code"));
  return q;
}

/** Launches `client_id` about `patient` from the portal; returns the `launch` value. */
async function launchFrom(agent, patient, { mode = "open-here", encounter, client = APP.client_id } = {}) {
  const page = await agent.go(`/ehr/?patient=${patient}`);
  assert.equal(page.res.status, 200);
  const fill = encounter === undefined ? {} : { encounter };
  const result = await agent.submit(page, `.app-row[data-client-id="${client}"] .${mode}`, { fill });
  if (mode === "open-tab") {
    assert.equal(`${result.redirect.origin}${result.redirect.pathname}`, APP.launch_uri, "the new tab goes to the app's launch URL");
    return { launch: result.redirect.searchParams.get("launch"), url: result.redirect };
  }
  assert.equal(result.res.status, 200, result.html.slice(0, 300));
  const frame = result.doc.querySelector("#app-frame");
  assert.ok(frame, "the app is embedded");
  const url = new URL(frame.getAttribute("src"));
  assert.equal(`${url.origin}${url.pathname}`, APP.launch_uri);
  assert.equal(url.searchParams.get("iss"), `${w.url}/fhir`);
  assert.equal(result.doc.querySelector("#patient-banner").getAttribute("data-patient-id"), patient);
  return { launch: url.searchParams.get("launch"), url, page: result };
}

describe("signing in", () => {
  test("not signed in: /ehr/ shows the server's sign-in form, then the portal", async () => {
    const agent = new Agent(w.url);
    const form = await agent.go("/ehr/");
    assert.equal(form.url.pathname, "/auth/portal");
    assert.ok(form.doc.querySelector("#username") && form.doc.querySelector("#password"));
    assert.equal(form.doc.querySelector("form").getAttribute("action"), "/auth/portal/login");
    assert.match(form.res.headers.get("content-security-policy"), /default-src 'none'/);
    const wrong = await agent.submit(form, "#login-submit", { fill: { username: PRACTITIONER.username, password: "wrong" } });
    assert.equal(wrong.res.status, 401);
    assert.ok(wrong.doc.querySelector("#login-error"));
    const page = await agent.submit(wrong, "#login-submit", { fill: { username: PRACTITIONER.username, password: PASSWORD } });
    assert.equal(page.doc.querySelector("#signed-in-user").text, PRACTITIONER.display_name);
    // The same session as /auth/manage and /auth/authorize: the management page knows the user.
    const manage = await agent.go("/auth/manage");
    assert.match(manage.html, /Applications with access/);
  });

  test("the sign-in form needs its CSRF cookie", async () => {
    const res = await fetch(`${w.url}/auth/portal/login`, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: `csrf=x&username=${PRACTITIONER.username}&password=${PASSWORD}` });
    assert.equal(res.status, 403);
  });
});

describe("the practitioner's patient list", () => {
  test("lists patients with name, birth date and gender; searches by name prefix", async () => {
    const { agent, page } = await signIn();
    assert.ok(rows(page).includes(NED) && rows(page).includes(BUSTER));
    assert.equal(rows(page).length, 20, "one page, not every patient");
    assert.deepEqual(rows(page).slice(0, 2), [NED, BUSTER], "in family-name order: Hintz, Hoeger, then Kreiger and the Pagetests");
    const ned = page.doc.querySelector(`.patient-row[data-patient-id="${NED}"]`);
    if (ned) assert.match(ned.text, /Ned.*Hintz/);
    const found = await agent.go("/ehr/?q=hint");
    assert.deepEqual(rows(found), [NED], "Patient?name= prefix semantics");
    const cells = found.doc.querySelectorAll(".patient-row td").map((td) => td.text.trim());
    assert.match(cells[0], /Hintz/);
    assert.match(cells[1], /^\d{4}-\d{2}-\d{2}$/);
    assert.match(cells[2], /^(male|female|other|unknown)$/);
    assert.equal(found.doc.querySelector("#patient-search").getAttribute("value"), "hint");
    const none = await agent.go("/ehr/?q=Nobody-by-this-name");
    assert.deepEqual(rows(none), []);
    assert.ok(none.doc.querySelector("#no-patients"));
  });

  test("pages with _count/_offset: next and previous links keep the search", async () => {
    const { agent } = await signIn();
    const first = await agent.go("/auth/portal?q=Pagetest");
    assert.equal(rows(first).length, 20);
    assert.equal(first.doc.querySelector("#prev-page"), null);
    assert.match(first.doc.querySelector("#page-info").text, new RegExp(`^1–20 of ${PAGED}$`));
    const nextHref = first.doc.querySelector("#next-page").getAttribute("href");
    assert.equal(nextHref, "/auth/portal?q=Pagetest&offset=20");
    const second = await agent.go(nextHref);
    assert.equal(rows(second).length, PAGED - 20);
    assert.equal(second.doc.querySelector("#next-page"), null);
    assert.equal(new Set([...rows(first), ...rows(second)]).size, PAGED, "no patient twice, none missing");
    assert.equal(second.doc.querySelector("#prev-page").getAttribute("href"), "/auth/portal?q=Pagetest");
    // Picking a patient keeps the page.
    const picked = await agent.go(second.doc.querySelector(".patient-link").getAttribute("href"));
    assert.equal(rows(picked).length, PAGED - 20);
    assert.ok(picked.doc.querySelector("#patient-banner"));
  });
});

describe("launching", () => {
  test("picking a patient shows the banner and every app with a launch_uri, each openable here or in a new tab", async () => {
    const { agent } = await signIn();
    const page = await agent.go(`/ehr/?patient=${NED}`);
    const banner = page.doc.querySelector("#patient-banner");
    assert.match(banner.text, /Hintz/);
    assert.ok(banner.querySelector(".banner-gender") && banner.querySelector(".banner-birth"));
    const apps = page.doc.querySelectorAll(".app-row").map((r) => r.getAttribute("data-client-id"));
    assert.deepEqual(apps, [APP.client_id]);
    assert.ok(page.doc.querySelector(".open-here") && page.doc.querySelector(".open-tab[formtarget=_blank]"));
    assert.equal(page.doc.querySelector(".app-row").parentNode.parentNode.getAttribute("method"), "post", "launching is a POST");
    assert.match(page.res.headers.get("content-security-policy"), /frame-src 'self' https:\/\/app\.example;/);
    // GET never launches.
    assert.equal((await agent.raw(`/auth/portal/launch?patient=${NED}&embed=${APP.client_id}`)).status, 405);
  });

  test("an embedded launch is bound to the signed-in user: another user is refused, the user completes it with patient and encounter, once", async () => {
    const { agent } = await signIn();
    const { launch: first } = await launchFrom(agent, NED);
    // Another user presenting it: access_denied (the check tests/authorize.test.mjs makes for the API).
    const wrong = new Agent(w.url);
    const login = await wrong.go(authorizeUrl(w, { launch: first, scope: "launch openid patient/*.rs" }));
    const denied = expectRedirect(await wrong.submit(login, "#login-submit", { fill: { username: OTHER.username, password: OTHER.password } }), { error: "access_denied" });
    assert.match(denied.get("error_description"), /another user/);
    // Single use: even its own user cannot use it after that.
    const reused = expectRedirect(await agent.go(authorizeUrl(w, { launch: first, scope: "launch openid patient/*.rs" })), { error: "invalid_request" });
    assert.match(reused.get("error_description"), /already used/);

    // With an encounter: the portal's session is adopted (no second login), consent, code.
    const chooser = await agent.go(`/ehr/?patient=${NED}`);
    const encounter = chooser.doc.querySelectorAll("#encounter option").map((o) => o.getAttribute("value")).find((v) => v);
    assert.ok(encounter, "Ned has encounters to choose from");
    const { launch } = await launchFrom(agent, NED, { encounter });
    const consent = await agent.go(authorizeUrl(w, { launch, scope: "launch openid patient/*.rs" }));
    assert.ok(consent.doc.querySelector("#approve"), "the portal's session signs the user in");
    const q = expectRedirect(await agent.submit(consent, "#approve"));
    const grant = (await grantOf(w, q.get("code"))).grant;
    assert.equal(grant.user.username, PRACTITIONER.username);
    assert.equal(grant.context.patient, NED);
    assert.equal(grant.context.encounter, encounter);
    assert.equal(grant.context.need_patient_banner, false, "embedded under the portal's banner, the app need not draw one");
    expectRedirect(await agent.go(authorizeUrl(w, { launch, scope: "launch openid patient/*.rs" })), { error: "invalid_request" });
  });

  test("'Open in a new tab' answers a redirect to the app's launch URL with a fresh launch", async () => {
    const { agent } = await signIn();
    const a = await launchFrom(agent, BUSTER, { mode: "open-tab" });
    const b = await launchFrom(agent, BUSTER, { mode: "open-tab" });
    assert.ok(a.launch && b.launch && a.launch !== b.launch, "each opening is its own launch");
    assert.equal(a.url.searchParams.get("iss"), `${w.url}/fhir`);
  });

  test("the launch form needs the session's CSRF token and a session", async () => {
    const { agent, page } = await signIn();
    const good = csrfOf(page);
    const post = (a, body) => a.raw("/auth/portal/launch", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(body).toString() });
    assert.equal((await post(agent, { csrf: "forged", patient: NED, embed: APP.client_id })).status, 403);
    assert.equal((await post(agent, { patient: NED, embed: APP.client_id })).status, 403);
    // Another session's token does not work either.
    const other = await signIn();
    assert.notEqual(csrfOf(other.page), good);
    assert.equal((await post(other.agent, { csrf: good, patient: NED, embed: APP.client_id })).status, 403);
    // Without a session: back to the sign-in page, nothing created.
    const anonymous = await post(new Agent(w.url), { csrf: good, patient: NED, embed: APP.client_id });
    assert.equal(anonymous.status, 303);
    assert.equal(anonymous.headers.get("location"), "/auth/portal");
    // The right token, but no such app, a foreign encounter, a missing patient.
    assert.equal((await post(agent, { csrf: good, patient: NED, embed: "nobody" })).status, 400);
    assert.equal((await post(agent, { csrf: good, patient: NED, encounter: "not-neds", embed: APP.client_id })).status, 403);
    assert.equal((await post(agent, { csrf: good, patient: "no-such-patient", embed: APP.client_id })).status, 403);
    assert.equal((await post(agent, { csrf: good, patient: NED, embed: APP.client_id })).status, 200);
  });
});

describe("a patient user", () => {
  test("ned sees only his own record, whatever he asks for, and can launch only about himself", async () => {
    const { agent, page } = await signIn(PATIENT_USER);
    assert.deepEqual(rows(page), [NED]);
    assert.equal(page.doc.querySelector("#patient-search"), null);
    for (const path of ["/ehr/?q=Buster", "/ehr/?q=Pagetest&offset=20", `/ehr/?offset=20`]) {
      assert.deepEqual(rows(await agent.go(path)), [NED], path);
    }
    const other = await agent.go(`/ehr/?patient=${BUSTER}`);
    assert.equal(other.res.status, 403);
    assert.equal(other.doc.querySelector("#patient-banner"), null);
    assert.equal(other.doc.querySelector(".app-row"), null);
    const res = await agent.raw("/auth/portal/launch", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ csrf: csrfOf(page), patient: BUSTER, embed: APP.client_id }).toString() });
    assert.equal(res.status, 403);
    const { launch } = await launchFrom(agent, NED);
    const consent = await agent.go(authorizeUrl(w, { launch, scope: "launch openid patient/*.rs" }));
    const grant = (await grantOf(w, expectRedirect(await agent.submit(consent, "#approve")).get("code"))).grant;
    assert.equal(grant.context.patient, NED);
    assert.equal(grant.user.username, PATIENT_USER.username);
  });
});

test("garbage input never answers 5xx", async () => {
  const { agent, page } = await signIn();
  const csrf = csrfOf(page);
  const anonymous = new Agent(w.url);
  const queries = ["q=%00%FF", "q=" + "x".repeat(5000), "q=a,b,c,d,e,f", "offset=-1", "offset=99999999999999999999", "offset=10000",
    "patient=..%2F..", "patient=" + "p".repeat(300), "q=%27%3B--&patient=%3Cscript%3E", "q[]=1&q=2", "offset=NaN&q=%E2%80%AE"];
  for (const q of queries) {
    for (const a of [agent, anonymous]) {
      for (const path of [`/auth/portal?${q}`, `/ehr/?${q}`]) {
        const res = await a.raw(path);
        const text = await res.text();
        assert.ok(res.status < 500, `${path}: ${res.status} ${text.slice(0, 500)}`);
      }
    }
  }
  const bodies = ["", "%", "csrf=" + csrf, `csrf=${csrf}&patient=${NED}&embed=${APP.client_id}&tab=${APP.client_id}`,
    `csrf=${csrf}&patient=${NED}&embed=` + "a".repeat(5000), `csrf=${csrf}&patient=${NED}&encounter=%00&embed=${APP.client_id}`, "x".repeat(70000)];
  for (const body of bodies) {
    for (const [path, type] of [["/auth/portal/launch", "application/x-www-form-urlencoded"], ["/auth/portal/login", "application/x-www-form-urlencoded"], ["/auth/portal/launch", "application/json"]]) {
      const res = await agent.raw(path, { method: "POST", headers: { "Content-Type": type }, body });
      const text = await res.text();
      assert.ok(res.status < 500 && res.status >= 300, `${path} ${body.slice(0, 40)}: ${res.status} ${text.slice(0, 500)}`);
    }
  }
  for (const method of ["PUT", "DELETE"]) assert.equal((await agent.raw("/auth/portal", { method })).status, 405);
});
