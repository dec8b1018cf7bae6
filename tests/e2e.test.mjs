// End to end, the way `npm start` runs it: the built Worker under `wrangler dev`, the demo
// page opened in headless Chromium (Debian's), the SDK loaded in the page doing PKCE and
// SMART discovery against the server.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startDevServer } from "../scripts/dev-server.mjs";
import { tempDir, ADMIN_TOKEN } from "./helpers/worker.mjs";
import { seed, APP, PRACTITIONER, NED } from "./helpers/fixtures.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
let server;
let browser;

before(async () => {
  server = await startDevServer({ port: 8790, persistTo: tempDir(), vars: { ADMIN_TOKEN } });
  server.fetch = (path, init) => fetch(server.url + path, init);
  await seed(server, { clients: [{ ...APP, redirect_uris: [`${server.url}/callback`] }] });
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

test("wrangler dev serves the discovery endpoints", async () => {
  const res = await fetch(`${server.url}/fhir/.well-known/smart-configuration`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.issuer, server.url);
  const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
  assert.equal(jwks.keys.length, 2);
});

test("the demo page runs the SDK in Chromium under its CSP", async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (msg) => { if (msg.type() === "error") problems.push(msg.text()); });
  page.on("pageerror", (err) => problems.push(err.message));
  const response = await page.goto(`${server.url}/`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /script-src 'self' 'wasm-unsafe-eval'/);
  await page.waitForFunction(() => document.getElementById("sdk-status").textContent !== "loading…");
  assert.equal(await page.textContent("#sdk-status"), "ready");
  assert.equal(await page.textContent("#token-endpoint"), `${server.url}/auth/token`);
  assert.equal(await page.textContent("#authorize-endpoint"), `${server.url}/auth/authorize`);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test("a user signs in, picks a patient and approves in Chromium, and the app gets its code", async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (msg) => { if (msg.type() === "error" && !msg.text().includes("404")) problems.push(msg.text()); });
  const params = new URLSearchParams({
    response_type: "code", client_id: APP.client_id, redirect_uri: `${server.url}/callback`,
    scope: "launch/patient openid fhirUser patient/*.rs", state: "browser-state", aud: `${server.url}/fhir`,
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256",
  });
  await page.goto(`${server.url}/auth/authorize?${params}`);
  await page.fill("#username", PRACTITIONER.username);
  await page.fill("#password", PRACTITIONER.password);
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: `${process.env.SCREENSHOT_DIR}/login.png` });
  await page.click("#login-submit");
  await page.waitForSelector(".patient-pick");
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: `${process.env.SCREENSHOT_DIR}/picker.png` });
  await page.click(`.patient-pick[data-patient-id="${NED}"]`);
  await page.waitForSelector("#approve");
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: `${process.env.SCREENSHOT_DIR}/consent.png`, fullPage: true });
  await Promise.all([page.waitForURL((url) => url.pathname === "/callback"), page.click("#approve")]);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get("state"), "browser-state");
  assert.match(url.searchParams.get("code"), /^[0-9a-f]{64}\.[A-Za-z0-9_-]{43}$/);
  assert.equal(url.searchParams.get("iss"), server.url);
  assert.deepEqual(problems, [], "no CSP violation or script error on the pages");
  await page.close();
});
