// The lab-viewer demo app (issue 10), end to end in Debian's headless Chromium against
// `wrangler dev` as `npm start` runs it: the app's static pages (demo-app/lab-viewer/) use only
// the SDK; the server's real login, patient picker and consent pages. Checked: an EHR launch
// (created through POST /auth/ehr/launch), a standalone launch with the picker, a patient user
// who only ever sees himself, and the error states a person meets first. The chart's points
// are compared with what the FHIR API answers for the same patient and test.
// Writes docs/screenshots/lab-viewer.png (and lab-viewer-phone.png, 375 px wide).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import * as jose from "jose";
import { chromium } from "playwright-core";
import { startDevServer } from "../scripts/dev-server.mjs";
import { tempDir, ADMIN_TOKEN, ROOT, adminHeaders } from "./helpers/worker.mjs";
import { seed, PRACTITIONER, PATIENT_USER, NED } from "./helpers/fixtures.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const PORT = 8792;
const CODES = { "4548-4": "Hemoglobin A1c", "2339-0": "Glucose" };
const SCREENSHOTS = join(ROOT, "docs", "screenshots");

let server;
let browser;
let systemToken; // a backend service's system/*.rs token: the FHIR API's own answers
let patient; // a fixture patient with HbA1c or glucose results
let code; // which of the two

async function admin(path, body) {
  const res = await fetch(server.url + path, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  assert.ok(res.ok, `${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** A SMART Backend Services token (private_key_jwt, ES384) to read the FHIR API as a system. */
async function backendToken() {
  const { privateKey, publicKey } = await jose.generateKeyPair("ES384", { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), alg: "ES384", kid: "demo-test-1" };
  await admin("/admin/clients", { client_id: "demo-test-reader", client_name: "demo test reader", client_type: "backend", scope: "system/*.rs", jwks: { keys: [jwk] } });
  const tokenUrl = `${server.url}/auth/token`;
  const assertion = await new jose.SignJWT({ iss: "demo-test-reader", sub: "demo-test-reader", aud: tokenUrl, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 240 })
    .setProtectedHeader({ alg: "ES384", kid: "demo-test-1" })
    .sign(privateKey);
  const res = await fetch(tokenUrl, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", scope: "system/*.rs", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.access_token;
}

/** Every resource a FHIR search answers (all pages), read with the system token. */
async function fhirSearch(query) {
  const out = [];
  let url = `${server.url}/fhir/${query}`;
  while (url) {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${systemToken}`, Accept: "application/fhir+json" } });
    assert.equal(res.status, 200, `${url}: ${res.status}`);
    const bundle = await res.json();
    out.push(...(bundle.entry ?? []).map((e) => e.resource));
    url = bundle.link?.find((l) => l.relation === "next")?.url ?? null;
  }
  return out;
}

async function fhirRead(path) {
  const res = await fetch(`${server.url}/fhir/${path}`, { headers: { Authorization: `Bearer ${systemToken}`, Accept: "application/fhir+json" } });
  assert.equal(res.status, 200);
  return res.json();
}

before(async () => {
  server = await startDevServer({ port: PORT, persistTo: tempDir("smart-edge-demo-"), vars: { ADMIN_TOKEN } });
  // The lab-viewer registration of config/clients.json, on this server's origin.
  const clients = JSON.parse(readFileSync(join(ROOT, "config", "clients.json"), "utf8"))
    .map((c) => JSON.parse(JSON.stringify(c).replaceAll("http://127.0.0.1:8787", server.url)));
  const labViewer = clients.find((c) => c.client_id === "lab-viewer");
  assert.deepEqual(labViewer.redirect_uris, [`${server.url}/lab-viewer/`]);
  assert.equal(labViewer.launch_uri, `${server.url}/lab-viewer/launch.html`);
  server.fetch = (path, init) => fetch(server.url + path, init);
  await seed(server, { clients: [labViewer] });
  // The three fixture patients have no HbA1c or glucose results: one more Synthea patient
  // (trimmed to the Patient and its laboratory and vital-sign Observations) who has both.
  await admin("/admin/fhir/bundle", readFileSync(join(ROOT, "tests", "fixtures", "lab-viewer", "Ammie_Huels_ea186cb3-ccb1-4dfc-a92e-dc9286aaa2ce.json"), "utf8"));
  systemToken = await backendToken();

  // A patient with HbA1c (or else glucose) results, found through the FHIR API.
  for (const c of Object.keys(CODES)) {
    const found = await fhirSearch(`Observation?code=${encodeURIComponent(`http://loinc.org|${c}`)}&_count=500`);
    const counts = {};
    for (const o of found) counts[o.subject.reference] = (counts[o.subject.reference] ?? 0) + 1;
    const best = Object.entries(counts).sort((a, b) => b[1] - a[1])[0];
    if (best && best[1] > 1) {
      patient = best[0].split("/").pop();
      code = c;
      break;
    }
  }
  assert.ok(patient, "a patient with HbA1c or glucose results");
  // Synthea sends no reference ranges and no interpretations: three made-up results for Ned
  // (tagged as such) that carry them, for the flag and the range column.
  const madeUp = (loinc, display, effectiveDateTime, value, extra) => ({
    resource: {
      resourceType: "Observation", status: "final", meta: { tag: [{ system: "urn:smart-edge:test", code: "made-up" }] },
      category: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "laboratory" }] }],
      code: { coding: [{ system: "http://loinc.org", code: loinc, display }] }, subject: { reference: `Patient/${NED}` },
      effectiveDateTime, valueQuantity: { value, unit: "mg/dL", system: "http://unitsofmeasure.org", code: "mg/dL" }, ...extra,
    },
    request: { method: "POST", url: "Observation" },
  });
  await admin("/admin/fhir/bundle", { resourceType: "Bundle", type: "transaction", entry: [
    madeUp("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "2020-01-10T09:00:00Z", 92, { referenceRange: [{ low: { value: 70, unit: "mg/dL" }, high: { value: 99, unit: "mg/dL" } }] }),
    madeUp("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "2020-06-10T09:00:00Z", 131, { referenceRange: [{ low: { value: 70, unit: "mg/dL" }, high: { value: 99, unit: "mg/dL" } }] }),
    madeUp("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "2020-06-10T09:00:00Z", 96, { interpretation: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", code: "L" }] }] }),
  ] });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Script errors and console errors of a page (CSP violations show up here). */
function watch(page) {
  const problems = [];
  page.on("console", (msg) => { if (msg.type() === "error") problems.push(`${msg.text()} (${msg.location().url})`); });
  page.on("pageerror", (err) => problems.push(err.message));
  return problems;
}

const APP_URL = () => `${server.url}/lab-viewer/`;

/** The server's pages: sign in, pick the patient when asked, consent when asked (a remembered consent skips it). */
async function signIn(page, user, { pick, decision = "#approve" } = {}) {
  await page.fill("#username", user.username);
  await page.fill("#password", user.password);
  await page.click("#login-submit");
  const picked = [];
  if (pick) {
    await page.waitForSelector(".patient-pick");
    picked.push(...(await page.$$eval(".patient-pick", (els) => els.map((e) => e.dataset.patientId))));
    await page.click(`.patient-pick[data-patient-id="${pick}"]`);
  }
  const asked = await Promise.race([
    page.waitForSelector(decision).then(() => true),
    page.waitForURL((u) => u.href.startsWith(APP_URL())).then(() => false),
  ]);
  if (asked) await page.click(decision);
  await page.waitForURL((u) => u.href.startsWith(APP_URL()));
  return { picked, asked };
}

/** Waits until the app shows its results (or a problem), and answers which. */
async function settled(page) {
  await page.waitForFunction(() => {
    const panel = document.getElementById("panel");
    const problem = document.getElementById("problem");
    if (!panel || !problem) return false; // the app's page is not there yet
    return !problem.hidden || (panel.dataset.state && panel.dataset.state !== "loading");
  }, null, { timeout: 30_000 });
  return page.evaluate(() => (document.getElementById("problem").hidden ? document.getElementById("panel").dataset.state : `problem:${document.getElementById("problem").dataset.code}`));
}

/** What the FHIR API holds for one patient and test, as [date, value] pairs in date order. */
async function seriesFromApi(patientId, loinc) {
  const observations = await fhirSearch(`Observation?patient=${patientId}&code=${encodeURIComponent(`http://loinc.org|${loinc}`)}&_count=500`);
  return observations.map((o) => [o.effectiveDateTime, o.valueQuantity.value]).sort((a, b) => a[0].localeCompare(b[0]));
}

async function seriesFromChart(page) {
  const points = await page.$$eval("#chart circle.point", (els) => els.map((e) => [e.dataset.date, Number(e.dataset.value)]));
  return points.sort((a, b) => a[0].localeCompare(b[0]));
}

/**
 * The banner, the table (one row per LOINC code, with its count) and a chart equal to the API's
 * values. `page` may be a frame (the app embedded in the portal); `keyboard` is the page's.
 * With `banner: false` the EHR draws the banner and the app must not.
 */
async function checkApp(page, patientId, loinc, { banner = true, keyboard = page.keyboard } = {}) {
  assert.equal(await settled(page), "ready");
  const record = await fhirRead(`Patient/${patientId}`);
  const official = record.name.find((n) => n.use === "official") ?? record.name[0];
  assert.equal(await page.isVisible("#banner"), banner);
  if (banner) {
    assert.equal(await page.getAttribute("#banner", "data-patient-id"), patientId);
    const name = await page.textContent("#patient-name");
    assert.ok(name.includes(official.family) && name.includes(official.given[0]), name);
    assert.equal((await page.textContent("#patient-gender")).toLowerCase(), record.gender);
    assert.match(await page.textContent("#patient-age"), /^\d+ y/);
    assert.notEqual(await page.textContent("#patient-identifier"), "");
  }

  // The table: the laboratory Observations the API has for the patient, grouped by LOINC code.
  const labs = await fhirSearch(`Observation?patient=${patientId}&category=laboratory&_count=500`);
  const byCode = {};
  for (const o of labs) {
    const c = o.code.coding.find((x) => x.system === "http://loinc.org").code;
    byCode[c] = (byCode[c] ?? 0) + 1;
  }
  const rows = await page.$$eval("#tests-body tr", (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.code, Number(tr.querySelector(".count").textContent)])));
  assert.deepEqual(rows, byCode);

  // Select the test: its chart's points are the API's values.
  await page.click(`#tests-body tr[data-code="${loinc}"] .test-select`);
  await page.waitForSelector(`#chart[data-code="${loinc}"] circle.point`);
  assert.equal(await page.getAttribute(`#tests-body tr[data-code="${loinc}"] .test-select`, "aria-pressed"), "true");
  const expected = await seriesFromApi(patientId, loinc);
  assert.ok(expected.length >= 1);
  assert.deepEqual(await seriesFromChart(page), expected);

  // A point, reached by keyboard, tells its exact value and date.
  await page.focus("#chart circle.point");
  await keyboard.press("End");
  const last = await page.evaluate(() => ({ label: document.activeElement.getAttribute("aria-label"), date: document.activeElement.dataset.date, value: document.activeElement.dataset.value }));
  assert.equal(last.date, expected.at(-1)[0]);
  assert.ok(await page.isVisible("#tooltip"));
  assert.equal(await page.textContent("#readout"), last.label);
  assert.equal(await page.textContent("#tooltip"), last.label);
  return { expected };
}

test("without a sign-in, the app says so and offers a launch", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const problems = watch(page);
    const response = await page.goto(APP_URL());
    assert.equal(response.status(), 200);
    assert.match(response.headers()["content-security-policy"], /script-src 'self' 'wasm-unsafe-eval'/);
    assert.equal(await settled(page), "problem:no_session");
    assert.equal(await page.textContent("#problem-title"), "You are not signed in");
    const restart = new URL(await page.getAttribute("#problem-restart", "href"), page.url());
    assert.equal(restart.pathname, "/lab-viewer/launch.html");
    assert.equal(restart.searchParams.get("iss"), `${server.url}/fhir`);
    // launch.html without iss explains itself instead of failing silently.
    await page.goto(`${server.url}/lab-viewer/launch.html`);
    await page.waitForSelector("#problem:not([hidden])");
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("EHR launch, consent denied: the app explains it", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const problems = watch(page);
    const { launch_url } = await admin("/auth/ehr/launch", { client_id: "lab-viewer", user: PRACTITIONER.username, patient });
    await page.goto(launch_url);
    await signIn(page, PRACTITIONER, { decision: "#deny" });
    assert.equal(await settled(page), "problem:access_denied");
    assert.equal(await page.textContent("#problem-title"), "Access was not granted");
    assert.equal(await page.evaluate(() => location.search), "");
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("EHR launch: banner, lab table, and a trend chart whose points are the FHIR API's values", async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  try {
    const page = await context.newPage();
    const problems = watch(page);
    const created = await admin("/auth/ehr/launch", { client_id: "lab-viewer", user: PRACTITIONER.username, patient });
    const launchUrl = new URL(created.launch_url);
    assert.equal(launchUrl.origin + launchUrl.pathname, `${server.url}/lab-viewer/launch.html`);
    assert.equal(launchUrl.searchParams.get("iss"), `${server.url}/fhir`);
    const authorizeRequest = page.waitForRequest((r) => r.url().startsWith(`${server.url}/auth/authorize?`));
    await page.goto(created.launch_url);
    const authorize = new URL((await authorizeRequest).url()).searchParams;
    assert.equal(authorize.get("client_id"), "lab-viewer");
    assert.equal(authorize.get("redirect_uri"), APP_URL());
    assert.equal(authorize.get("launch"), created.launch);
    assert.deepEqual(authorize.get("scope").split(" ").sort(), ["fhirUser", "launch", "launch/patient", "openid", "patient/Observation.rs", "patient/Patient.rs"]);
    const { asked } = await signIn(page, PRACTITIONER);
    assert.ok(asked, "the consent page was shown");
    const { expected } = await checkApp(page, patient, code);
    assert.equal(await page.evaluate(() => location.search), "", "code and state are gone from the address bar");

    // The screenshot for the README: the table and the chart, a point focused.
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.focus("#chart circle.point");
    for (let i = 0; i < Math.floor(expected.length / 2); i++) await page.keyboard.press("ArrowRight");
    await page.screenshot({ path: join(SCREENSHOTS, "lab-viewer.png"), fullPage: true });

    // Readable at 375 px: nothing wider than the screen, the chart redrawn to fit.
    await page.setViewportSize({ width: 375, height: 812 });
    await page.waitForFunction(() => Number(document.querySelector("#chart svg")?.getAttribute("width")) <= 375);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 375), "no horizontal scrolling at 375 px");
    assert.deepEqual(await seriesFromChart(page), expected);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SCREENSHOTS, "lab-viewer-phone.png") });

    // A reload restores the session (no new authorization).
    await page.setViewportSize({ width: 1200, height: 900 });
    await page.reload();
    assert.equal(await settled(page), "ready");
    assert.equal(await page.getAttribute("#banner", "data-patient-id"), patient);

    // Vital signs, the second tab.
    await page.click("#tab-vital-signs");
    assert.equal(await settled(page), "ready");
    assert.ok((await page.$$("#tests-body tr")).length > 0);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("EHR launch with need_patient_banner false: the EHR draws the banner, the app does not", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const problems = watch(page);
    const { launch_url } = await admin("/auth/ehr/launch", { client_id: "lab-viewer", user: PRACTITIONER.username, patient, need_patient_banner: false });
    await page.goto(launch_url);
    await signIn(page, PRACTITIONER);
    assert.equal(await settled(page), "ready");
    assert.equal(await page.isVisible("#banner"), false);
    assert.ok((await page.$$("#tests-body tr")).length > 0);
    assert.deepEqual(problems, []);
    // The server goes away: the next tab says so in words.
    await page.route((u) => u.pathname === "/fhir/Observation", (route) => route.abort("connectionrefused"));
    await page.click("#tab-vital-signs");
    await page.waitForFunction(() => document.getElementById("panel").dataset.state === "error");
    assert.match(await page.textContent("#panel-status"), /^The server cannot be reached\./);
  } finally {
    await context.close();
  }
});

test("standalone launch: sign in, pick the patient, same table and chart", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const problems = watch(page);
    const authorizeRequest = page.waitForRequest((r) => r.url().startsWith(`${server.url}/auth/authorize?`));
    await page.goto(`${server.url}/lab-viewer/launch.html?${new URLSearchParams({ iss: `${server.url}/fhir` })}`);
    const authorize = new URL((await authorizeRequest).url()).searchParams;
    assert.equal(authorize.get("launch"), null);
    assert.ok(!authorize.get("scope").split(" ").includes("launch"));
    const { picked } = await signIn(page, PRACTITIONER, { pick: patient });
    assert.ok(picked.includes(patient) && picked.includes(NED), "a practitioner picks among all patients");
    await checkApp(page, patient, code);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("a patient user (ned) in a standalone launch sees only his own record", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${server.url}/lab-viewer/launch.html?${new URLSearchParams({ iss: `${server.url}/fhir` })}`);
    const { picked, asked } = await signIn(page, PATIENT_USER, { pick: NED });
    assert.deepEqual(picked, [NED], "the picker offers only him");
    assert.ok(asked);
    await checkApp(page, NED, "2345-7");
    // The flag: from the lab's range when it sent one, from its interpretation first.
    const row = (c) => page.$eval(`#tests-body tr[data-code="${c}"]`, (tr) => ({ range: tr.querySelector(".range").textContent, flag: tr.querySelector(".flag").dataset.flag }));
    assert.deepEqual(await row("2345-7"), { range: "70–99 mg/dL", flag: "high" });
    assert.deepEqual(await row("1558-6"), { range: "–", flag: "low" });
    assert.ok(await page.$('#chart[data-code="2345-7"] rect.band-lab'), "the lab's range as the band");
    assert.deepEqual(await seriesFromChart(page), [["2020-01-10T09:00:00Z", 92], ["2020-06-10T09:00:00Z", 131]]);
    assert.equal(await page.textContent("#patient-name"), "Mr. Ned Hintz");
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test("the whole path through the EHR portal: sign in, search, launch lab-viewer embedded, consent, chart = API", async () => {
  // As config/settings.json does for npm start: the portal's origin may frame the sign-in pages.
  const settings = { server_name: "smart-edge demo", ehr_origins: [server.url] };
  const put = await fetch(`${server.url}/admin/settings`, { method: "PUT", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(settings) });
  assert.equal(put.status, 200);
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  try {
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${server.url}/ehr/`);
    await page.fill("#username", PRACTITIONER.username);
    await page.fill("#password", PRACTITIONER.password);
    await Promise.all([page.waitForURL(/\/auth\/portal$/), page.click("#login-submit")]);
    // Search by the first letters of the family name: the patient is in the list.
    const record = await fhirRead(`Patient/${patient}`);
    const family = (record.name.find((n) => n.use === "official") ?? record.name[0]).family;
    await page.fill("#patient-search", family.slice(0, 4));
    await Promise.all([page.waitForURL(/q=/), page.click("#search-submit")]);
    const listed = await page.$$eval(".patient-row", (rows) => rows.map((r) => r.dataset.patientId));
    assert.ok(listed.includes(patient), `${family} is found`);
    assert.ok(!listed.includes(NED), "the search filters");
    await Promise.all([page.waitForURL(/patient=/), page.click(`.patient-row[data-patient-id="${patient}"] .patient-link`)]);
    assert.match(await page.textContent("#patient-banner"), new RegExp(family));
    // Open lab-viewer here: consent inside the frame, then the app, which leaves the banner to the portal.
    const [frameHandle] = await Promise.all([page.waitForSelector("#app-frame"), page.click('.app-row[data-client-id="lab-viewer"] .open-here')]);
    const frame = await frameHandle.contentFrame();
    // Consent, unless the user already gave it to lab-viewer in an earlier test (remembered).
    const asked = await Promise.race([
      frame.waitForSelector("#approve").then(() => true),
      frame.waitForURL((u) => u.href.startsWith(APP_URL())).then(() => false),
    ]);
    if (asked) await frame.click("#approve");
    await frame.waitForURL((u) => u.href.startsWith(APP_URL()));
    const { expected } = await checkApp(frame, patient, code, { banner: false, keyboard: page.keyboard });
    mkdirSync(SCREENSHOTS, { recursive: true });
    await frame.focus("#chart circle.point");
    for (let i = 0; i < Math.floor(expected.length / 2); i++) await page.keyboard.press("ArrowRight");
    await page.screenshot({ path: join(SCREENSHOTS, "portal.png"), fullPage: true });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
