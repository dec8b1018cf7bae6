// EHR launch time in headless Chromium (issue 9, "Speed"): the smart-edge SDK next to
// fhirclient.js 2.6.3 (npm, its browser build), against the same smart-edge server under
// `wrangler dev`, alternating in one run.
//
// Each launch: `POST /auth/ehr/launch` (admin token) → a fresh browser context → sign in once
// through the management page's real login form (this sets the server's session cookie; NOT
// timed) → open the app's launch page (http://127.0.0.1:9080/<sdk>-launch.html?iss=…&launch=…)
// → the SDK discovers and redirects to /auth/authorize → the server adopts the session, the
// client's consent is pre-approved, so it redirects straight back with a code → the redirect
// page calls ready() (token exchange; ours also verifies the ID token over the JWKS) and then
// patient.read().
//
// What is timed: from the launch page's navigation start (`performance.timeOrigin`, which the
// launch page stores in sessionStorage) to the moment `patient.read()` has resolved on the
// redirect page (`performance.timeOrigin + performance.now()` there). Both are taken inside the
// browser, on the same clock; the test side only reads them (its own wall time, which adds
// Playwright's polling, is printed as a check). Every context is fresh, so the launch page
// downloads and compiles its SDK with nothing cached; the redirect page, in the same context,
// takes the SDK files from the HTTP cache (ours: /sdk/* are cacheable; fhirclient's bundle is
// served cacheable too). Split at the launch page leaving for /auth/authorize (the redirect
// page's `performance.timeOrigin`): to_authorize_ms (launch page, SDK load, discovery) and
// from_authorize_ms (the server's authorize and sign-in redirects, the redirect page,
// ready(), patient.read()). One uncounted warm-up launch per SDK first; rounds alternate which
// SDK goes first.
//
//   node bench/launch.mjs [rounds=10]
// Prints one JSON line per SDK (median/min/max ms over the rounds), then the ratio and the
// gzipped sizes (`gzip -9c <file> | wc -c`, the files the pages load).
import http from "node:http";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startDevServer } from "../scripts/dev-server.mjs";
import { tempDir, ADMIN_TOKEN, ROOT, adminHeaders } from "../tests/helpers/worker.mjs";
import { seed, PRACTITIONER, NED } from "../tests/helpers/fixtures.mjs";

const ROUNDS = Number(process.argv[2] ?? 10);
const PORT = 8795;
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const APP = "http://127.0.0.1:9080";
const CLIENT_ID = "bench-launch";
const SCOPE = "launch openid fhirUser patient/*.rs";
const PAGES = join(ROOT, "bench", "launch-app");
// fhirclient.js's browser build, taken from its npm tarball alone (`npm pack`): installing the
// package would pull ~460 optional dependencies (expo, react-native) into the dev lock.
const FHIRCLIENT_DIR = join(ROOT, ".cache", "fhirclient-2.6.3");
const FHIRCLIENT = join(FHIRCLIENT_DIR, "package", "build", "fhir-client.min.js");
if (!existsSync(FHIRCLIENT)) {
  mkdirSync(FHIRCLIENT_DIR, { recursive: true });
  const tarball = execFileSync("npm", ["pack", "fhirclient@2.6.3", "--silent", "--pack-destination", FHIRCLIENT_DIR], { encoding: "utf8" }).trim().split("\n").pop();
  execFileSync("tar", ["-xzf", join(FHIRCLIENT_DIR, tarball), "-C", FHIRCLIENT_DIR, "package/build/fhir-client.min.js", "package/package.json"]);
}
const SDK_DIR = join(ROOT, "demo-app", "sdk"); // what the Worker serves at /sdk/
const SDKS = {
  "smart-edge": { page: "ours" },
  "fhirclient 2.6.3": { page: "fhirclient" },
};

/** The app's origin: the bench pages (the SDK URL written into ours-*.js) and fhirclient's bundle. */
function startApp(sdkUrl) {
  const csp = [
    "default-src 'none'",
    `script-src 'self' ${new URL(sdkUrl).origin} 'wasm-unsafe-eval'`,
    "connect-src http://127.0.0.1:*",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  const files = Object.fromEntries(readdirSync(PAGES).map((f) => [f, readFileSync(join(PAGES, f), "utf8").replaceAll("__SDK__", sdkUrl)]));
  files["fhir-client.min.js"] = readFileSync(FHIRCLIENT);
  const served = http.createServer((req, res) => {
    const name = new URL(req.url, APP).pathname.slice(1);
    const headers = { "Cache-Control": "no-store", "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff" };
    if (!Object.hasOwn(files, name)) {
      res.writeHead(name === "favicon.ico" ? 204 : 404, headers);
      return res.end();
    }
    // fhirclient's bundle is cached like the Worker caches our SDK (/sdk/*: immutable), so the
    // redirect page takes it from the context's HTTP cache, as ours does.
    if (name === "fhir-client.min.js") headers["Cache-Control"] = "public, max-age=31536000, immutable";
    res.writeHead(200, { ...headers, "Content-Type": name.endsWith(".js") ? "text/javascript; charset=utf-8" : "text/html; charset=utf-8" });
    res.end(files[name]);
  });
  return new Promise((resolve, reject) => served.once("error", reject).listen(9080, "127.0.0.1", () => resolve(served)));
}

const gzipSize = (file) => Number(execFileSync("bash", ["-c", 'gzip -9c "$1" | wc -c', "gzip", file], { encoding: "utf8" }).trim());
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (x) => Number(x.toFixed(1));

const server = await startDevServer({ port: PORT, persistTo: tempDir("smart-edge-bench-launch-"), vars: { ADMIN_TOKEN } });
let app;
let browser;
try {
  server.fetch = (path, init) => fetch(server.url + path, init);
  await seed(server, {
    clients: [{
      client_id: CLIENT_ID,
      client_name: "Launch benchmark",
      client_type: "public",
      redirect_uris: [`${APP}/ours-index.html`, `${APP}/fhirclient-index.html`],
      launch_uri: `${APP}/ours-launch.html`,
      scope: "launch launch/patient openid fhirUser patient/*.rs",
      consent: "pre-approved",
    }],
    users: [PRACTITIONER],
  });
  const sdkUrl = `${server.url}/sdk/smart-edge.js`;
  // The SDK files the page loads are the ones sized below.
  const entry = await (await fetch(sdkUrl)).text();
  if (entry !== readFileSync(join(SDK_DIR, "smart-edge.js"), "utf8")) throw new Error("the server's /sdk/smart-edge.js is not demo-app/sdk/smart-edge.js");
  app = await startApp(sdkUrl);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });

  async function launchOnce(sdk) {
    const res = await server.fetch("/auth/ehr/launch", {
      method: "POST",
      headers: adminHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ client_id: CLIENT_ID, user: PRACTITIONER.username, patient: NED }),
    });
    if (res.status !== 201) throw new Error(`ehr/launch: ${res.status} ${await res.text()}`);
    const created = new URL((await res.json()).launch_url);
    const url = `${APP}/${SDKS[sdk].page}-launch.html?${new URLSearchParams({ iss: created.searchParams.get("iss"), launch: created.searchParams.get("launch") })}`;
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems = [];
      page.on("pageerror", (e) => problems.push(e.message));
      // Untimed: a session cookie for this context, through the real sign-in form.
      await page.goto(`${server.url}/auth/manage`);
      await page.fill("#username", PRACTITIONER.username);
      await page.fill("#password", PRACTITIONER.password);
      await page.click("#login-submit");
      await page.waitForSelector("h1:has-text('Applications with access')");
      if (!(await context.cookies(`${server.url}/auth/authorize`)).some((c) => c.name === "se_session")) throw new Error("no session cookie after sign-in");
      // Timed in the page: launch page navigation start → patient.read() resolved.
      const requests = [];
      page.on("request", (r) => requests.push(`${r.method()} ${r.url().split("?")[0]}`));
      const wall0 = performance.now();
      await page.goto(url, { waitUntil: "commit" });
      await page.waitForFunction(() => window.bench !== undefined, null, { timeout: 30_000 });
      const wall = performance.now() - wall0;
      const result = await page.evaluate(() => window.bench);
      if (result.error) throw new Error(`${sdk}: ${result.error}`);
      if (result.patientId !== NED || result.resource !== `Patient/${NED}`) throw new Error(`${sdk}: read ${result.resource}`);
      if (!(result.t0 > 0 && result.t1 > result.t0)) throw new Error(`${sdk}: timestamps ${result.t0} ${result.t1}`);
      if (problems.length) throw new Error(`${sdk}: ${problems.join("; ")}`);
      // The redirect page's fetches, named without ids and hashes (e.g. "POST /auth/token" is "/auth/token").
      const fetched = Object.fromEntries(result.fetched.map((e) => [
        new URL(e.url).pathname.replace(/\/Patient\/.*/, "/Patient/{id}").replace(/\.[0-9a-f]{12}\./, ".{hash}."),
        { start: e.start, end: e.end },
      ]));
      return { fetched, redirectPageEnd: result.t1 - result.tRedirect, ms: result.t1 - result.t0, to_authorize_ms: result.tRedirect - result.t0, from_authorize_ms: result.t1 - result.tRedirect, wall_ms: wall, requests };
    } finally {
      await context.close();
    }
  }

  const names = Object.keys(SDKS);
  const times = Object.fromEntries(names.map((n) => [n, []]));
  const walls = Object.fromEntries(names.map((n) => [n, []]));
  const phases = Object.fromEntries(names.map((n) => [n, { launch: [], redirect: [] }]));
  const requests = {};
  const fetches = {};
  // One uncounted warm-up launch each (the server's isolates and Durable Objects), then the
  // rounds, alternating which SDK goes first.
  for (const n of names) await launchOnce(n);
  for (let round = 0; round < ROUNDS; round++) {
    for (const n of round % 2 ? [...names].reverse() : names) {
      const r = await launchOnce(n);
      times[n].push(r.ms);
      walls[n].push(r.wall_ms);
      phases[n].launch.push(r.to_authorize_ms);
      phases[n].redirect.push(r.from_authorize_ms);
      requests[n] = r.requests;
      (fetches[n] ??= []).push({ fetched: r.fetched, end: r.redirectPageEnd });
      process.stderr.write(`round ${round + 1} ${n}: ${ms(r.ms)} ms (test-side wall ${ms(r.wall_ms)} ms)\n`);
    }
  }

  for (const n of names) process.stderr.write(`${n}, requests of the last launch:\n  ${requests[n].join("\n  ")}\n`);
  // Where the time after the authorize redirect goes: each fetch of the redirect page, [start, end]
  // in median ms since that navigation's start (the launch page leaving for /auth/authorize: the
  // server's authorize and sign-in redirects come first), and the end of patient.read().
  for (const n of names) {
    const keys = Object.keys(fetches[n][0].fetched);
    const row = Object.fromEntries(keys.map((k) => [k, [ms(median(fetches[n].map((f) => f.fetched[k]?.start ?? NaN))), ms(median(fetches[n].map((f) => f.fetched[k]?.end ?? NaN)))]]));
    process.stderr.write(`${n}, after /auth/authorize, [start, end] ms: ${JSON.stringify({ ...row, "patient.read() done": ms(median(fetches[n].map((f) => f.end))) })}\n`);
  }
  const sdkFiles = readdirSync(SDK_DIR).filter((f) => /\.(js|wasm)$/.test(f)).map((f) => join(SDK_DIR, f));
  const sizes = {
    "smart-edge": Object.fromEntries(sdkFiles.map((f) => [f.slice(ROOT.length + 1), gzipSize(f)])),
    "fhirclient 2.6.3": { [FHIRCLIENT.slice(ROOT.length + 1)]: gzipSize(FHIRCLIENT) },
  };
  const total = (n) => Object.values(sizes[n]).reduce((a, b) => a + b, 0);
  for (const n of names) {
    console.log(JSON.stringify({
      sdk: n,
      launch_ms_median: ms(median(times[n])),
      launch_ms_min: ms(Math.min(...times[n])),
      launch_ms_max: ms(Math.max(...times[n])),
      to_authorize_ms_median: ms(median(phases[n].launch)),
      from_authorize_ms_median: ms(median(phases[n].redirect)),
      wall_ms_median: ms(median(walls[n])),
      requests: requests[n].length,
      rounds: times[n].length,
      gzip_bytes: total(n),
      files: sizes[n],
    }));
  }
  const [ours, theirs] = names;
  console.log(JSON.stringify({
    ratio: `${ours} / ${theirs}`,
    launch_median: Number((median(times[ours]) / median(times[theirs])).toFixed(2)),
    launch_per_round_median: Number(median(times[ours].map((t, i) => t / times[theirs][i])).toFixed(2)),
    gzip_bytes: Number((total(ours) / total(theirs)).toFixed(2)),
  }));
} finally {
  await browser?.close();
  await new Promise((resolve) => (app ? app.close(resolve) : resolve()));
  await server.stop();
}
