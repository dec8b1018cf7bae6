// Operations on workerd: one JSON log line per request on the Worker's stdout (captured from
// workerd through Miniflare's handleRuntimeStdio), with no token, code, secret or password in
// any output; the request id header; and the edge rate limits through Miniflare's local
// rate-limiting bindings (the [[ratelimits]] of wrangler.toml, with a 10 s period and small
// limits): 429 with Retry-After in each endpoint's own style, other clients and addresses
// unaffected, and the endpoint answering again after the period.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders, wranglerRatelimits, ADMIN_TOKEN } from "./helpers/worker.mjs";
import { seed, authorizeUrl, APP, NED, PRACTITIONER, PATIENT_USER } from "./helpers/fixtures.mjs";
import { Agent } from "./helpers/agent.mjs";
import { authorize, exchange, refresh, form } from "./helpers/flows.mjs";

const SECRET = "s".repeat(48);
const RESOURCE_SERVER = { ...APP, client_id: "resource-server", client_type: "confidential-symmetric", client_secrets: [SECRET], consent: "pre-approved", resource_server: true };
// Two confidential clients for the per-client token limit.
const BUSY = { ...APP, client_id: "busy-client", client_type: "confidential-symmetric", client_secrets: [SECRET] };
const QUIET = { ...BUSY, client_id: "quiet-client" };
const PERIOD = 10;
const LIMITS = {
  RATE_LIMIT_LOGIN_IP: 5,
  RATE_LIMIT_TOKEN_IP: 8,
  RATE_LIMIT_TOKEN_CLIENT: 8,
  RATE_LIMIT_REGISTRATION_IP: 2,
  RATE_LIMIT_REGISTRATION_CLIENT: 2,
};

const RECORDER = `
class Dataset {
  writeDataPoint(point) {
    console.log(JSON.stringify({ analytics_engine_data_point: point }));
  }
}
export default function () {
  return new Dataset();
}`;

let w;
let output = "";
function capture(stdout, stderr) {
  stdout.on("data", (chunk) => (output += chunk));
  stderr.on("data", (chunk) => (output += chunk));
}
before(async () => {
  const ratelimits = wranglerRatelimits((name) => ({ limit: LIMITS[name], period: PERIOD }));
  assert.deepEqual(Object.keys(ratelimits).sort(), Object.keys(LIMITS).sort(), "wrangler.toml declares every limit the Worker asks for");
  w = await startWorker({
    bindings: { RATE_LIMIT_PERIOD: String(PERIOD) },
    // METRICS: a dataset that prints each data point it is given (Miniflare's own local
    // dataset keeps nothing to look at; it is used in the last test).
    worker: { ratelimits, wrappedBindings: { METRICS: { scriptName: "metrics-recorder" } } },
    workers: [{ name: "metrics-recorder", modules: true, script: RECORDER }],
    miniflare: { handleRuntimeStdio: capture },
  });
  await seed(w, { clients: [APP, RESOURCE_SERVER, BUSY, QUIET], users: [PRACTITIONER, PATIENT_USER] });
});
after(() => w.dispose());

/** The log lines (parsed) printed since `mark` (a length of `output`), once the lines of the
 * request ids `ids` are among them (stdout reaches us through a pipe; the wait is bounded). */
async function linesSince(mark, ids) {
  for (let i = 0; i < 100; i++) {
    const lines = requestLines(output.slice(mark));
    if (ids.every((id) => lines.some((l) => l.request_id === id))) return lines;
    await new Promise((r) => setTimeout(r, 20));
  }
  return requestLines(output.slice(mark));
}

function requestLines(text) {
  return text
    .split("\n")
    .filter((line) => line.includes('"msg":"request"'))
    .map((line) => JSON.parse(line.slice(line.indexOf("{"))));
}

const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString("base64")}`;

test("one JSON line per request, with the route, status, duration and client; no secret anywhere in the output", async () => {
  const mark = output.length;
  const sent = [];
  const track = async (res) => {
    sent.push(res.headers.get("x-request-id"));
    return res;
  };
  // authorize → login → code (through the pages), then token, FHIR read, refresh, introspect.
  const { code, verifier } = await authorize(w, { client_id: APP.client_id });
  const exchanged = await exchange(w, code, verifier);
  assert.equal(exchanged.res.status, 200);
  sent.push(exchanged.res.headers.get("x-request-id"));
  const { access_token, refresh_token, id_token } = exchanged.body;
  const read = await track(await w.fetch(`/fhir/Patient/${NED}`, { headers: { Authorization: `Bearer ${access_token}` } }));
  assert.equal(read.status, 200);
  await read.text();
  const search = await track(await w.fetch(`/fhir/Observation?patient=${NED}&code=8302-2`, { headers: { Authorization: `Bearer ${access_token}` } }));
  assert.equal(search.status, 200);
  await search.text();
  const refreshed = await refresh(w, refresh_token, { client_id: APP.client_id });
  assert.equal(refreshed.res.status, 200, JSON.stringify(refreshed.body));
  sent.push(refreshed.res.headers.get("x-request-id"));
  const introspected = await track(
    await w.fetch("/auth/introspect", { ...form({ token: refreshed.body.access_token }), headers: { "Content-Type": "application/x-www-form-urlencoded", Authorization: basic(RESOURCE_SERVER.client_id, SECRET) } }),
  );
  assert.equal((await introspected.json()).active, true);

  const lines = await linesSince(mark, sent);
  for (const line of lines) {
    assert.deepEqual(Object.keys(line).filter((k) => !["client_id", "fhir", "rate_limited"].includes(k)), ["msg", "request_id", "method", "route", "status", "duration_ms"]);
    assert.match(line.request_id, /^[0-9a-f]{32}$/, "a random id without cf-ray");
    assert.equal(typeof line.duration_ms, "number");
  }
  const byId = new Map(lines.map((l) => [l.request_id, l]));
  for (const id of sent) assert.ok(byId.has(id), `the X-Request-Id ${id} is a logged request`);
  const [token, fhirRead, fhirSearch, refreshLine, introspectLine] = sent.map((id) => byId.get(id));
  assert.deepEqual(token, { ...token, method: "POST", route: "Token", status: 200, client_id: "test-app" });
  assert.deepEqual(fhirRead, { ...fhirRead, method: "GET", route: "Fhir", status: 200, client_id: "test-app", fhir: "read" });
  assert.deepEqual(fhirSearch, { ...fhirSearch, route: "Fhir", fhir: "search-type" });
  assert.deepEqual(refreshLine, { ...refreshLine, route: "Token", status: 200, client_id: "test-app" });
  assert.deepEqual(introspectLine, { ...introspectLine, route: "Introspect", status: 200, client_id: "resource-server" });
  // The pages of the flow are logged by route name: the authorize query stays out of the log.
  const routes = lines.map((l) => l.route);
  for (const route of ["Authorize", "SignIn", "Login", "Pick", "Consent"]) assert.ok(routes.includes(route), `${route} in ${routes}`);

  // Nothing secret or identifying appears anywhere in what workerd printed.
  const secrets = { access_token, refresh_token, id_token, code, verifier, refreshed_access: refreshed.body.access_token, refreshed_refresh: refreshed.body.refresh_token, SECRET, ADMIN_TOKEN, password: PRACTITIONER.password };
  for (const [name, value] of Object.entries(secrets)) {
    assert.ok(value && value.length > 8, name);
    assert.ok(!output.includes(value), `${name} appears in the output`);
  }
  assert.ok(!output.includes(NED), "no patient id (the FHIR path) in the output");
  assert.ok(!output.includes("state-123"), "no authorize query in the output");
  assert.ok(!output.includes("8302-2"), "no FHIR query in the output");
});

/** The data points written to METRICS since `mark`, once there are at least `count`. */
async function pointsSince(mark, count) {
  const read = () =>
    output
      .slice(mark)
      .split("\n")
      .filter((line) => line.includes('"analytics_engine_data_point"'))
      .map((line) => JSON.parse(line.slice(line.indexOf("{"))).analytics_engine_data_point);
  for (let i = 0; i < 100 && read().length < count; i++) await new Promise((r) => setTimeout(r, 20));
  return read();
}

const point = (...blobs) => ({ indexes: [blobs[0]], blobs, doubles: [1] });

test("counters: tokens issued by grant type, FHIR calls by interaction, failed logins, through the METRICS binding", async () => {
  const mark = output.length;
  const { code, verifier } = await authorize(w, { client_id: APP.client_id });
  const { body } = await exchange(w, code, verifier);
  const headers = { Authorization: `Bearer ${body.access_token}` };
  assert.equal((await (await w.fetch(`/fhir/Patient/${NED}`, { headers })).json()).id, NED);
  const missing = await w.fetch("/fhir/Patient/nobody-here", { headers });
  assert.equal(missing.status, 404);
  await missing.text();
  assert.equal((await refresh(w, body.refresh_token, { client_id: APP.client_id })).res.status, 200);
  // A wrong password on the management page's form.
  const agent = new Agent(w.url);
  const page = await agent.go("/auth/manage");
  const refused = await agent.submit(page, "form", { fill: { username: PRACTITIONER.username, password: "not-the-password" } });
  assert.equal(refused.res.status, 401);
  // A refused token request counts nothing.
  const bad = await w.fetch("/auth/token", form({ grant_type: "authorization_code", code: "nope", client_id: APP.client_id }));
  assert.equal(bad.status, 400);
  await bad.text();
  const points = await pointsSince(mark, 5);
  assert.deepEqual(points, [
    point("token_issued", "authorization_code"),
    point("fhir_call", "read", "200"),
    point("fhir_call", "read", "404"),
    point("token_issued", "refresh_token"),
    point("login_failed", "ManageLogin"),
  ]);
});

test("cf-ray is the request id when Cloudflare sends one; every answer carries it", async () => {
  const mark = output.length;
  const res = await w.fetch("/health", { headers: { "cf-ray": "8f2c3a1b2c3d4e5f-AMS" } });
  assert.equal(res.headers.get("x-request-id"), "8f2c3a1b2c3d4e5f-AMS");
  const [line] = await linesSince(mark, ["8f2c3a1b2c3d4e5f-AMS"]);
  assert.deepEqual(line, { msg: "request", request_id: "8f2c3a1b2c3d4e5f-AMS", method: "GET", route: "Health", status: 200, duration_ms: line.duration_ms });
  const missing = await w.fetch("/nowhere/Patient/123?name=Smith");
  assert.equal(missing.status, 404);
  assert.match(missing.headers.get("x-request-id"), /^[0-9a-f]{32}$/);
  const notFound = (await linesSince(mark, [missing.headers.get("x-request-id")])).find((l) => l.request_id === missing.headers.get("x-request-id"));
  assert.equal(notFound.route, "NotFound");
  assert.ok(!output.slice(mark).includes("Smith"));
});

/** Waits, if needed, so that a burst starts with at least 4 s left in the limiter's window. */
async function startOfWindow() {
  const left = PERIOD * 1000 - (Date.now() % (PERIOD * 1000));
  if (left < 4000) await new Promise((r) => setTimeout(r, left + 50));
}

const ip = (n) => ({ "CF-Connecting-IP": `203.0.113.${n}` });

function assertRefused429(res, body, error) {
  assert.equal(res.status, 429, JSON.stringify(body));
  assert.equal(res.headers.get("retry-after"), String(PERIOD));
  assert.equal(body.error, error);
  assert.equal(res.headers.get("cache-control"), "no-store");
}

describe("edge rate limits", () => {
  test("token endpoint per address: 429 temporarily_unavailable with Retry-After; another address is unaffected; the endpoint answers again after the period", async () => {
    await startOfWindow();
    const call = (headers, client_id = "no-such-client") =>
      w.fetch("/auth/token", { ...form({ grant_type: "client_credentials", client_id }), headers: { "Content-Type": "application/x-www-form-urlencoded", ...headers } });
    for (let i = 0; i < LIMITS.RATE_LIMIT_TOKEN_IP; i++) {
      const res = await call(ip(10), `client-${i}`);
      assert.equal(res.status, 401, "under the limit: the endpoint's own answer");
      await res.text();
    }
    const over = await call(ip(10), "client-x");
    const body = await over.json();
    assertRefused429(over, body, "temporarily_unavailable");
    assert.equal(body.error_description, `too many token requests from this address; retry after ${PERIOD} seconds`);
    assert.equal(over.headers.get("access-control-allow-origin"), "*", "CORS like every token answer");
    assert.match(over.headers.get("access-control-expose-headers"), /Retry-After, X-Request-Id/, "browser apps can read them");
    const other = await call(ip(11), "client-y");
    assert.equal(other.status, 401, "another address");
    await other.text();
    // After Retry-After seconds the window has passed.
    await new Promise((r) => setTimeout(r, Number(over.headers.get("retry-after")) * 1000));
    const again = await call(ip(10), "client-z");
    assert.equal(again.status, 401);
    await again.text();
  });

  test("token endpoint per client: counted once the client has authenticated; strangers naming it use up nothing", async () => {
    // Review finding: counted on the name alone, anyone could use up a client's limit.
    await startOfWindow();
    const mark = output.length;
    const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString("base64")}`;
    const call = (n, client_id, secret) =>
      w.fetch("/auth/token", {
        ...form({ grant_type: "authorization_code", code: "not-a-code", code_verifier: "v".repeat(43) }),
        headers: { "Content-Type": "application/x-www-form-urlencoded", Authorization: basic(client_id, secret), ...ip(n) },
      });
    for (let i = 0; i < 2 * LIMITS.RATE_LIMIT_TOKEN_CLIENT; i++) assert.equal((await call(100 + i, BUSY.client_id, "wrong")).status, 401);
    // The client itself: its requests count (invalid_grant for the made-up code) up to the limit.
    for (let i = 0; i < LIMITS.RATE_LIMIT_TOKEN_CLIENT; i++) assert.equal((await call(20 + i, BUSY.client_id, SECRET)).status, 400);
    const over = await call(30, BUSY.client_id, SECRET);
    const body = await over.json();
    assertRefused429(over, body, "temporarily_unavailable");
    assert.equal(body.error_description, `too many token requests from this client; retry after ${PERIOD} seconds`);
    assert.equal((await call(31, QUIET.client_id, SECRET)).status, 400);
    const lines = await linesSince(mark, [over.headers.get("x-request-id")]);
    const limited = lines.find((l) => l.request_id === over.headers.get("x-request-id"));
    assert.deepEqual(limited, { ...limited, route: "Token", status: 429, client_id: BUSY.client_id, rate_limited: "token:client" });
    assert.deepEqual(await pointsSince(mark, 1), [point("rate_limited", "token", "client")]);
  });

  test("registration per address and per client: 429 with the OAuth error JSON", async () => {
    await startOfWindow();
    const register = (n) => w.fetch("/auth/register", { method: "POST", headers: { "Content-Type": "application/json", ...ip(n) }, body: "{}" });
    for (let i = 0; i < LIMITS.RATE_LIMIT_REGISTRATION_IP; i++) {
      const res = await register(40);
      assert.notEqual(res.status, 429);
      await res.text();
    }
    const over = await register(40);
    assertRefused429(over, await over.json(), "temporarily_unavailable");
    const other = await register(41);
    assert.notEqual(other.status, 429);
    await other.text();
    // The client configuration endpoint counts per client once the registration access token
    // is checked (review finding: counted on the client id in the path, strangers could use up
    // a client's limit and keep it from managing its registration).
    const metadata = { client_name: "limited", redirect_uris: ["https://app.example/cb"], token_endpoint_auth_method: "none", grant_types: ["authorization_code"], response_types: ["code"], scope: "openid patient/*.rs" };
    const registered = await w.fetch("/auth/register", { method: "POST", headers: adminHeaders({ "Content-Type": "application/json", ...ip(45) }), body: JSON.stringify(metadata) });
    const info = await registered.json();
    assert.equal(registered.status, 201, JSON.stringify(info));
    const read = (n, token) => w.fetch(`/auth/register/${info.client_id}`, { headers: { ...ip(n), Authorization: `Bearer ${token}` } });
    for (let i = 0; i < 2 * LIMITS.RATE_LIMIT_REGISTRATION_CLIENT; i++) {
      const stranger = await read(50 + i, "wrong");
      assert.equal(stranger.status, 401, "a stranger is refused and uses up nothing");
      await stranger.text();
    }
    for (let i = 0; i < LIMITS.RATE_LIMIT_REGISTRATION_CLIENT; i++) {
      const own = await read(60 + i, info.registration_access_token);
      assert.equal(own.status, 200, "the client itself, under its limit");
      await own.text();
    }
    const overClient = await read(64, info.registration_access_token);
    const overBody = await overClient.json();
    assertRefused429(overClient, overBody, "temporarily_unavailable");
    assert.equal(overBody.error_description, `too many registration requests from this client; retry after ${PERIOD} seconds`);
  });

  test("sign-in forms per address: 429, Retry-After and the form again with the message", async () => {
    await startOfWindow();
    const post = (path, n) => w.fetch(path, { ...form({ username: "dr.test", password: "wrong", csrf: "x" }), headers: { "Content-Type": "application/x-www-form-urlencoded", ...ip(n) }, redirect: "manual" });
    for (let i = 0; i < LIMITS.RATE_LIMIT_LOGIN_IP; i++) {
      const res = await post("/auth/manage/login", 70);
      assert.equal(res.status, 403, "under the limit: the form's own refusal (no CSRF cookie)");
      await res.text();
    }
    const message = `Too many sign-in attempts from your network. Try again in ${PERIOD} seconds.`;
    for (const path of ["/auth/manage/login", "/auth/portal/login", "/auth/login"]) {
      const over = await post(path, 70);
      assert.equal(over.status, 429, path);
      assert.equal(over.headers.get("retry-after"), String(PERIOD), path);
      assert.match(over.headers.get("content-type"), /^text\/html/);
      const html = await over.text();
      assert.ok(html.includes(message), `${path}: ${html.slice(0, 300)}`);
      if (path !== "/auth/login") assert.ok(html.includes('name="password"'), `${path} shows its sign-in form again`);
    }
    const other = await post("/auth/manage/login", 71);
    assert.equal(other.status, 403, "another address");
    await other.text();
  });

  test("the sign-in page itself (a pending authorization): over the limit, the login page with the message", async () => {
    await startOfWindow();
    const agent = new Agent(w.url);
    const raw = agent.raw.bind(agent);
    agent.raw = (url, init = {}) => raw(url, { ...init, headers: { ...(init.headers ?? {}), ...ip(80) } });
    let page = await agent.go(authorizeUrl(w));
    assert.ok(page.doc.querySelector("#login-submit"), "the login page");
    // Spend this address's allowance on another form.
    for (let i = 0; i < LIMITS.RATE_LIMIT_LOGIN_IP; i++) {
      const res = await w.fetch("/auth/manage/login", { ...form({}), headers: { "Content-Type": "application/x-www-form-urlencoded", ...ip(80) } });
      await res.text();
    }
    page = await agent.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: PRACTITIONER.password } });
    assert.equal(page.res.status, 429);
    assert.equal(page.res.headers.get("retry-after"), String(PERIOD));
    assert.ok(page.doc.querySelector("#login-submit"), "the login form again");
    assert.ok(page.html.includes(`Too many sign-in attempts from your network. Try again in ${PERIOD} seconds.`));
    assert.equal(page.doc.querySelector("input[name=username]").getAttribute("value"), PRACTITIONER.username);
  });
});

test("with Miniflare's local Analytics Engine dataset and without any METRICS binding, the Worker answers as usual", async () => {
  for (const worker of [{ analyticsEngineDatasets: { METRICS: { dataset: "smart_edge" } } }, {}]) {
    let printed = "";
    const local = await startWorker({ worker, miniflare: { handleRuntimeStdio: (out, err) => [out, err].forEach((s) => s.on("data", (c) => (printed += c))) } });
    try {
      await seed(local, { clients: [APP], users: [PRACTITIONER] });
      const { code, verifier } = await authorize(local, { client_id: APP.client_id });
      const { res } = await exchange(local, code, verifier);
      assert.equal(res.status, 200);
      assert.ok(printed.includes('"route":"Token","status":200'), "the token request was logged");
      assert.ok(!printed.includes("analytics engine write failed"), printed);
    } finally {
      await local.dispose();
    }
  }
});
