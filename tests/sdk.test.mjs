// The browser SDK end to end (issue 9): a pure HTML/JS app on another origin
// (http://127.0.0.1:9080, pages in tests/fixtures/sdk-app/) imports the SDK from the server
// under test (`/sdk/smart-edge.js`) and launches in Debian's headless Chromium, against
// smart-edge under `wrangler dev` (as `npm start` runs it: real login, patient picker and
// consent pages) and against an independent SMART server (node-oidc-provider + a FHIR stub,
// tests/helpers/peer-smart.mjs), so the SDK is not tied to our server's quirks.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startDevServer } from "../scripts/dev-server.mjs";
import { tempDir, ADMIN_TOKEN, ROOT, adminHeaders } from "./helpers/worker.mjs";
import { seed, PRACTITIONER, NED } from "./helpers/fixtures.mjs";
import { startPeerSmart, PATIENT_IDS, PRACTITIONER_ID } from "./helpers/peer-smart.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const APP = "http://127.0.0.1:9080";
const CLIENT_ID = "sdk-app";
const REDIRECT_URI = `${APP}/index.html`;
const PAGES = join(ROOT, "tests", "fixtures", "sdk-app");
const PRACTITIONER_ID_OURS = PRACTITIONER.fhir_user.split("/")[1];
const SCOPE = "openid fhirUser patient/*.rs user/*.rs";
const OFFLINE = `${SCOPE} offline_access`;

let server; // smart-edge under wrangler dev
let peer; // the independent SMART server
let app; // the app's static server
let browser;
const targets = {};

/** The app's origin: its pages, and config.js naming the SDK to import. */
function startApp(sdkUrl) {
  const csp = [
    "default-src 'none'",
    `script-src 'self' ${new URL(sdkUrl).origin} 'wasm-unsafe-eval'`,
    "connect-src http://127.0.0.1:*",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  const served = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, APP);
    const headers = { "Cache-Control": "no-store", "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff" };
    if (pathname === "/favicon.ico") {
      res.writeHead(204, headers);
      return res.end();
    }
    if (pathname === "/config.js") {
      res.writeHead(200, { ...headers, "Content-Type": "text/javascript; charset=utf-8" });
      return res.end(`export const SDK = ${JSON.stringify(sdkUrl)};\n`);
    }
    const name = pathname.slice(1);
    if (!/^[a-z-]+\.(html|js)$/.test(name) || !existsSync(join(PAGES, name))) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
      return res.end("not found");
    }
    res.writeHead(200, { ...headers, "Content-Type": name.endsWith(".js") ? "text/javascript; charset=utf-8" : "text/html; charset=utf-8" });
    res.end(readFileSync(join(PAGES, name)));
  });
  return new Promise((resolve, reject) => {
    served.once("error", reject).listen(9080, "127.0.0.1", () => resolve(served));
  });
}

before(async () => {
  server = await startDevServer({ port: 8791, persistTo: tempDir("smart-edge-sdk-"), vars: { ADMIN_TOKEN } });
  server.fetch = (path, init) => fetch(server.url + path, init);
  await seed(server, {
    clients: [{
      client_id: CLIENT_ID,
      client_name: "SDK test app",
      client_type: "public",
      redirect_uris: [REDIRECT_URI],
      launch_uri: `${APP}/launch.html`,
      scope: "launch launch/patient launch/encounter openid fhirUser profile offline_access patient/*.rs user/*.rs",
      consent: "ask",
    }],
  });
  // The practitioner's own resource, for user.read().
  const practitioner = { resourceType: "Practitioner", id: PRACTITIONER_ID_OURS, name: [{ family: "Test", given: ["Dana"], prefix: ["Dr."] }] };
  const bundle = { resourceType: "Bundle", type: "transaction", entry: [{ resource: practitioner, request: { method: "PUT", url: `Practitioner/${PRACTITIONER_ID_OURS}` } }] };
  const loaded = await server.fetch("/admin/fhir/bundle", { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(bundle) });
  assert.ok(loaded.ok, `loading the practitioner: ${loaded.status} ${await loaded.text()}`);

  peer = await startPeerSmart({ clients: [{ client_id: CLIENT_ID, redirect_uris: [REDIRECT_URI] }] });
  app = await startApp(`${server.url}/sdk/smart-edge.js`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });

  const ours = await (await fetch(`${server.url}/fhir/.well-known/smart-configuration`)).json();
  targets.ours = {
    name: "smart-edge",
    fhirBase: `${server.url}/fhir`,
    config: ours,
    issuer: server.url,
    /** An EHR launch for dr.test about Ned, created through the EHR launch API. */
    async ehrLaunchUrl(scope) {
      const res = await server.fetch("/auth/ehr/launch", {
        method: "POST",
        headers: adminHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ client_id: CLIENT_ID, user: PRACTITIONER.username, patient: NED }),
      });
      assert.equal(res.status, 201);
      const created = await res.json();
      const url = new URL(created.launch_url);
      assert.equal(url.origin + url.pathname, `${APP}/launch.html`);
      assert.equal(url.searchParams.get("iss"), `${server.url}/fhir`);
      assert.equal(url.searchParams.get("launch"), created.launch);
      url.searchParams.set("scope", scope);
      return url.href;
    },
    ehrPatient: NED,
    ehrEncounter: null,
    standalonePatient: NED,
    fhirUser: `${server.url}/fhir/${PRACTITIONER.fhir_user}`,
    userId: PRACTITIONER_ID_OURS,
    /** The real pages: sign in, pick the patient when asked, then approve (or deny). */
    async signIn(page, { pick, decision = "#approve" } = {}) {
      await page.fill("#username", PRACTITIONER.username);
      await page.fill("#password", PRACTITIONER.password);
      await page.click("#login-submit");
      if (pick) await page.click(`.patient-pick[data-patient-id="${pick}"]`);
      await page.click(decision);
    },
    refreshCount: null,
  };
  const theirs = await (await fetch(`${peer.fhirBase}/.well-known/smart-configuration`)).json();
  targets.peer = {
    name: "peer (node-oidc-provider)",
    fhirBase: peer.fhirBase,
    config: theirs,
    issuer: peer.issuer,
    async ehrLaunchUrl(scope) {
      const launch = peer.launch({ patient: PATIENT_IDS[0], encounter: "peer-enc-1" });
      return `${APP}/launch.html?${new URLSearchParams({ iss: peer.fhirBase, launch, scope })}`;
    },
    ehrPatient: PATIENT_IDS[0],
    ehrEncounter: "peer-enc-1",
    standalonePatient: PATIENT_IDS[0],
    fhirUser: `${peer.fhirBase}/Practitioner/${PRACTITIONER_ID}`,
    userId: PRACTITIONER_ID,
    async signIn() {}, // login and consent are automatic
    refreshCount: () => peer.refreshCount(),
  };
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (app ? app.close(resolve) : resolve()));
  await peer?.close();
  await server?.stop();
});

/** Collects a page's script errors and console errors (the server's favicon 404 aside). */
function watch(page) {
  const problems = [];
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.location().url.endsWith("/favicon.ico")) problems.push(`${msg.text()} (${msg.location().url})`);
  });
  page.on("pageerror", (err) => problems.push(err.message));
  return problems;
}

/** Requests a page makes, filtered. */
function record(page, filter) {
  const seen = [];
  page.on("request", (r) => { if (filter(r)) seen.push(r); });
  return seen;
}

const isRefresh = (target) => (r) =>
  r.method() === "POST" && r.url() === target.config.token_endpoint && new URLSearchParams(r.postData() ?? "").get("grant_type") === "refresh_token";

/**
 * Opens `url` (the app's launch page) in a new page of `context`, goes through the server's
 * pages, and answers what index.html published, with the authorization request the SDK made.
 */
async function launch(context, target, url, signIn = {}) {
  const page = await context.newPage();
  const problems = watch(page);
  const authorizeRequest = page.waitForRequest((r) => r.url().startsWith(`${target.config.authorization_endpoint}?`));
  const observationGets = record(page, (r) => r.method() === "GET" && new URL(r.url()).pathname.endsWith("/Observation"));
  await page.goto(url, { waitUntil: "commit" });
  const authorize = new URL((await authorizeRequest).url());
  await target.signIn(page, signIn);
  await page.waitForURL((u) => u.origin === APP && u.pathname === "/index.html");
  await page.waitForFunction(() => window.result !== undefined);
  const result = await page.evaluate(() => window.result);
  return { page, problems, result, authorize, observationGets };
}

/** A FHIR read from Node with a given access token. */
const fhirGet = (target, path, token) => fetch(`${target.fhirBase}/${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: "application/fhir+json" } });

function checkAuthorizeRequest(target, authorize, { ehr }) {
  const q = authorize.searchParams;
  assert.equal(q.get("response_type"), "code");
  assert.equal(q.get("client_id"), CLIENT_ID);
  assert.equal(q.get("redirect_uri"), REDIRECT_URI);
  assert.equal(q.get("aud"), target.fhirBase);
  assert.equal(q.get("code_challenge_method"), "S256");
  assert.match(q.get("code_challenge"), /^[A-Za-z0-9_-]{43}$/);
  assert.match(q.get("state"), /^[A-Za-z0-9_-]{32}$/);
  assert.match(q.get("nonce"), /^[A-Za-z0-9_-]{32}$/);
  assert.equal(q.get("scope").split(" ").includes("launch"), ehr);
  if (!ehr) assert.equal(q.get("launch"), null);
}

/** What index.html found after an authorization: the address bar, the context, the data. */
async function checkSession(target, { result, authorize, observationGets }, { patient, encounter }) {
  assert.equal(result.error, undefined, JSON.stringify(result.error));
  assert.equal(result.href, REDIRECT_URI, "code and state are gone from the address bar");
  assert.equal(result.patientId, patient);
  assert.equal(result.patient.resourceType, "Patient");
  assert.equal(result.patient.id, patient);
  assert.equal(result.encounterId, encounter);
  if (encounter) assert.equal(result.encounter.id, encounter);

  // Every page of the search, flattened, against the total of a direct query.
  const direct = await fhirGet(target, `Observation?patient=${patient}&_count=10`, result.state.accessToken);
  assert.equal(direct.status, 200);
  const { total } = await direct.json();
  assert.ok(total > 10, `${target.name}: ${total} observations, more than one page`);
  assert.equal(result.observations.length, total);
  assert.ok(result.observations.every((o) => o.resourceType === "Observation"));
  assert.equal(new Set(result.observations.map((o) => o.id)).size, total);
  assert.equal(observationGets.length, Math.ceil(total / 10), "one request per page");

  // The user, from the verified ID token.
  assert.equal(result.fhirUser, target.fhirUser);
  assert.equal(result.userType, "Practitioner");
  assert.equal(result.userId, target.userId);
  assert.equal(result.user.resourceType, "Practitioner");
  assert.equal(result.user.id, target.userId);
  const claims = result.idToken;
  assert.equal(claims.iss, target.issuer);
  assert.ok(claims.aud === CLIENT_ID || (Array.isArray(claims.aud) && claims.aud.includes(CLIENT_ID)), `aud ${claims.aud}`);
  assert.equal(claims.nonce, authorize.searchParams.get("nonce"));
  assert.equal(claims.fhirUser, target.fhirUser);
  assert.ok(claims.exp > Date.now() / 1000);
}

for (const which of ["ours", "peer"]) {
  describe(`against ${which === "ours" ? "smart-edge (wrangler dev)" : "the peer SMART server"}`, () => {
    test("EHR launch: launch page → sign-in and consent → ready(), patient, all observation pages, user, ID token", async () => {
      const target = targets[which];
      const context = await browser.newContext();
      try {
        const launchUrl = await target.ehrLaunchUrl(SCOPE);
        const run = await launch(context, target, launchUrl);
        checkAuthorizeRequest(target, run.authorize, { ehr: true });
        assert.equal(run.authorize.searchParams.get("launch"), new URL(launchUrl).searchParams.get("launch"));
        await checkSession(target, run, { patient: target.ehrPatient, encounter: target.ehrEncounter });
        assert.equal(run.result.state.refreshToken, null, "no offline_access, no refresh token");
        // A reload restores the session from storage, without a new authorization.
        await run.page.reload();
        await run.page.waitForFunction(() => window.result !== undefined);
        const again = await run.page.evaluate(() => window.result);
        assert.equal(again.error, undefined, JSON.stringify(again.error));
        assert.equal(again.state.accessToken, run.result.state.accessToken);
        assert.equal(again.patient.id, target.ehrPatient);
        assert.deepEqual(run.problems, []);
      } finally {
        await context.close();
      }
    });

    test("standalone launch (fhirServiceUrl) with the patient picker", async () => {
      const target = targets[which];
      const context = await browser.newContext();
      try {
        const url = `${APP}/launch.html?${new URLSearchParams({ fhirServiceUrl: target.fhirBase, scope: `launch/patient ${SCOPE}` })}`;
        const run = await launch(context, target, url, { pick: target.standalonePatient });
        checkAuthorizeRequest(target, run.authorize, { ehr: false });
        await checkSession(target, run, { patient: target.standalonePatient, encounter: null });
        assert.deepEqual(run.problems, []);
      } finally {
        await context.close();
      }
    });

    test("refresh(): with offline_access, a new access token that works", async () => {
      const target = targets[which];
      const context = await browser.newContext();
      try {
        const { page, problems, result } = await launch(context, target, await target.ehrLaunchUrl(OFFLINE));
        assert.equal(result.error, undefined, JSON.stringify(result.error));
        assert.ok(result.state.refreshToken, "offline_access gives a refresh token");
        const refreshes = record(page, isRefresh(target));
        const before = target.refreshCount?.();
        const after = await page.evaluate(async () => {
          const state = await window.client.refresh();
          const patient = await window.client.patient.read();
          return { accessToken: state.accessToken, current: window.client.state.accessToken, patient: patient.id };
        });
        assert.notEqual(after.accessToken, result.state.accessToken);
        assert.equal(after.current, after.accessToken);
        assert.equal(after.patient, target.ehrPatient);
        assert.equal(refreshes.length, 1);
        if (target.refreshCount) assert.equal(target.refreshCount() - before, 1);
        assert.equal((await fhirGet(target, `Patient/${target.ehrPatient}`, after.accessToken)).status, 200);
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
      }
    });

    test("two tabs refreshing at the same moment make one refresh request, and both keep working", async () => {
      const target = targets[which];
      const context = await browser.newContext();
      try {
        const first = await launch(context, target, await target.ehrLaunchUrl(OFFLINE));
        assert.equal(first.result.error, undefined, JSON.stringify(first.result.error));
        const tab = await context.newPage();
        const tabProblems = watch(tab);
        await tab.goto(`${APP}/tab.html?${new URLSearchParams({ iss: target.fhirBase })}`);
        await tab.waitForFunction(() => window.result !== undefined);
        const second = await tab.evaluate(() => window.result);
        assert.equal(second.error, undefined, JSON.stringify(second.error));
        assert.equal(second.state.accessToken, first.result.state.accessToken, "init() found the first tab's session");

        const tabs = [first.page, tab];
        const counts = tabs.map((p) => record(p, isRefresh(target)));
        const before = target.refreshCount?.();
        // Both tabs wait on a BroadcastChannel; one message starts both refreshes at once.
        for (const p of tabs) {
          await p.evaluate(() => {
            window.refreshed = new Promise((resolve) => {
              const channel = new BroadcastChannel("sdk-test-refresh");
              channel.onmessage = () => {
                channel.close();
                window.client.refresh().then((s) => resolve({ accessToken: s.accessToken }), (e) => resolve({ error: window.errorOf(e) }));
              };
            });
          });
        }
        await tab.evaluate(() => {
          const channel = new BroadcastChannel("sdk-test-refresh");
          channel.postMessage("go");
          channel.close();
        });
        const [a, b] = await Promise.all(tabs.map((p) => p.evaluate(() => window.refreshed)));
        assert.equal(a.error, undefined, JSON.stringify(a.error));
        assert.equal(b.error, undefined, JSON.stringify(b.error));
        assert.notEqual(a.accessToken, first.result.state.accessToken);
        assert.equal(a.accessToken, b.accessToken, "the second tab adopted the first one's refresh");
        assert.equal(counts[0].length + counts[1].length, 1, "one refresh request in all");
        if (target.refreshCount) assert.equal(target.refreshCount() - before, 1);
        const reads = await Promise.all(tabs.map((p) => p.evaluate(() => window.client.patient.read().then((r) => r.id, (e) => window.errorOf(e)))));
        assert.deepEqual(reads, [target.ehrPatient, target.ehrPatient]);
        assert.deepEqual(first.problems, []);
        assert.deepEqual(tabProblems, []);
      } finally {
        await context.close();
      }
    });

    test("logout() revokes: the old access token gets 401 and the refresh token is dead", async () => {
      const target = targets[which];
      const context = await browser.newContext();
      try {
        const { page, problems, result } = await launch(context, target, await target.ehrLaunchUrl(OFFLINE));
        assert.equal(result.error, undefined, JSON.stringify(result.error));
        const { accessToken, refreshToken } = result.state;
        assert.equal((await fhirGet(target, `Patient/${target.ehrPatient}`, accessToken)).status, 200);
        assert.ok(target.config.revocation_endpoint, "the server advertises revocation");
        const revocations = record(page, (r) => r.method() === "POST" && r.url() === target.config.revocation_endpoint);
        const outcome = await page.evaluate(() => window.client.logout().then(() => "ok", (e) => window.errorOf(e)));
        assert.equal(outcome, "ok");
        assert.deepEqual(revocations.map((r) => new URLSearchParams(r.postData()).get("token_type_hint")), ["refresh_token", "access_token"]);
        assert.equal((await fhirGet(target, `Patient/${target.ehrPatient}`, accessToken)).status, 401);
        const reuse = await fetch(target.config.token_endpoint, {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken, client_id: CLIENT_ID }),
        });
        assert.equal(reuse.status, 400);
        assert.equal((await reuse.json()).error, "invalid_grant");
        // The session is forgotten: nothing to restore.
        const restored = await page.evaluate(() => window.SMART.ready().then(() => "restored", (e) => window.errorOf(e)));
        assert.equal(restored.code, "no_session");
        assert.equal(restored.smartError, true);
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
      }
    });
  });
}

describe("rejections (smart-edge)", () => {
  test("a tampered state is refused with invalid_state", async () => {
    const target = targets.ours;
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems = watch(page);
      const tokenRequests = record(page, (r) => r.url() === target.config.token_endpoint);
      await page.goto(await target.ehrLaunchUrl(SCOPE), { waitUntil: "commit" });
      await page.fill("#username", PRACTITIONER.username);
      await page.fill("#password", PRACTITIONER.password);
      await page.click("#login-submit");
      await page.waitForSelector("#approve");
      // The consent's redirect back to the app gets its state edited, before ready() runs. The
      // consent POST is routed; the server's own redirects after it are followed here (with the
      // context's cookies), since the browser's follow-ups of a fulfilled redirect are not routed.
      let original;
      await page.route((u) => u.origin === server.url, async (route) => {
        let response = await route.fetch({ maxRedirects: 0 });
        let location = response.headers().location;
        for (let hops = 0; location && new URL(location, server.url).origin === server.url && hops < 5; hops++) {
          response = await context.request.get(new URL(location, server.url).href, { maxRedirects: 0 });
          location = response.headers().location;
        }
        if (!location?.startsWith(`${REDIRECT_URI}?`)) return route.fulfill({ response });
        const u = new URL(location);
        original = u.searchParams.get("state");
        u.searchParams.set("state", `${original.slice(0, -1)}${original.endsWith("A") ? "B" : "A"}`);
        return route.fulfill({ status: 303, headers: { Location: u.href, "Cache-Control": "no-store" } });
      });
      await page.click("#approve");
      await page.waitForURL((u) => u.origin === APP && u.pathname === "/index.html");
      await page.waitForFunction(() => window.result !== undefined);
      const { error } = await page.evaluate(() => window.result);
      assert.match(original, /^[A-Za-z0-9_-]{32}$/, "the redirect was edited");
      assert.equal(error.code, "invalid_state");
      assert.equal(error.smartError, true);
      assert.equal(error.name, "SmartError");
      assert.equal(error.status, null);
      assert.equal(tokenRequests.length, 0, "the code is never exchanged");
      assert.equal(await page.evaluate(() => location.search), "", "code and state are gone from the address bar");
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("an ID token with another authorization's nonce is refused with invalid_id_token", async () => {
    const target = targets.ours;
    // A first authorization, whose (genuine, signed) ID token is kept.
    const first = await browser.newContext();
    let stolen;
    try {
      const page = await first.newPage();
      const tokenResponse = page.waitForResponse((r) => r.url() === target.config.token_endpoint && r.request().method() === "POST");
      await page.goto(await target.ehrLaunchUrl(SCOPE), { waitUntil: "commit" });
      await target.signIn(page);
      stolen = (await (await tokenResponse).json()).id_token;
      assert.match(stolen, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    } finally {
      await first.close();
    }
    // A second one, whose token response carries the first one's ID token instead of its own.
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems = watch(page);
      let swapped = 0;
      await page.route(target.config.token_endpoint, async (route) => {
        const response = await route.fetch();
        const body = await response.json();
        assert.ok(body.id_token && body.id_token !== stolen);
        body.id_token = stolen;
        swapped++;
        const headers = { ...response.headers() };
        delete headers["content-length"];
        delete headers["content-encoding"];
        await route.fulfill({ status: response.status(), headers, body: JSON.stringify(body) });
      });
      await page.goto(await target.ehrLaunchUrl(SCOPE), { waitUntil: "commit" });
      await target.signIn(page);
      await page.waitForURL((u) => u.origin === APP && u.pathname === "/index.html");
      await page.waitForFunction(() => window.result !== undefined);
      const { error } = await page.evaluate(() => window.result);
      assert.equal(swapped, 1);
      assert.equal(error.code, "invalid_id_token");
      assert.match(error.message, /nonce/);
      assert.equal(error.smartError, true);
      // No session was stored: a reload has nothing to restore.
      assert.equal(await page.evaluate(() => window.SMART.ready().then(() => "restored", (e) => e.code)), "no_session");
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });

  test("a server error redirect (consent denied) rejects with access_denied", async () => {
    const target = targets.ours;
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems = watch(page);
      await page.goto(await target.ehrLaunchUrl(SCOPE), { waitUntil: "commit" });
      await target.signIn(page, { decision: "#deny" });
      await page.waitForURL((u) => u.origin === APP && u.pathname === "/index.html");
      await page.waitForFunction(() => window.result !== undefined);
      const { error } = await page.evaluate(() => window.result);
      assert.equal(error.code, "access_denied");
      assert.equal(error.smartError, true);
      assert.equal(error.status, null);
      assert.equal(await page.evaluate(() => location.search), "", "error and state are gone from the address bar");
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });
});

describe("rejections (peer SMART server)", () => {
  test("a server error redirect (an unknown launch) rejects with invalid_request", async () => {
    const target = targets.peer;
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems = watch(page);
      const url = `${APP}/launch.html?${new URLSearchParams({ iss: peer.fhirBase, launch: "forged", scope: SCOPE })}`;
      await page.goto(url, { waitUntil: "commit" });
      await page.waitForURL((u) => u.origin === APP && u.pathname === "/index.html");
      await page.waitForFunction(() => window.result !== undefined);
      const { error } = await page.evaluate(() => window.result);
      assert.equal(error.code, "invalid_request");
      assert.equal(error.smartError, true);
      assert.equal(error.status, null);
      assert.match(error.message, /launch/);
      assert.equal(await page.evaluate(() => location.search), "");
      assert.deepEqual(problems, []);
      assert.ok(target.config.authorization_endpoint.startsWith(peer.issuer));
    } finally {
      await context.close();
    }
  });
});
