// End to end, the way `npm start` runs it: the built Worker under `wrangler dev`, the demo
// page opened in headless Chromium (Debian's), the SDK loaded in the page doing PKCE and
// SMART discovery against the server.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startDevServer } from "../scripts/dev-server.mjs";
import { tempDir } from "./helpers/worker.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
let server;
let browser;

before(async () => {
  server = await startDevServer({ port: 8790, persistTo: tempDir() });
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
  assert.match(await page.textContent("#pkce-challenge"), /^[A-Za-z0-9_-]{43}$/);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});
