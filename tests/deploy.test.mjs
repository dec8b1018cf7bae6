// The guided deploy (scripts/deploy.mjs): its plan for each state of an account, its edits of
// wrangler.toml, its reading of wrangler's output, the real CLI offline; and the Worker's
// refusal to serve a deployment whose PUBLIC_BASE_URL is empty (workerd through Miniflare).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { parse } from "smol-toml";
import { planDeploy, formatPlan, validateUrl, environmentProblems, PlanError, PLACEHOLDER_KV_ID } from "../scripts/deploy/plan.mjs";
import { setEnvVar, setEnvKvId, addEnvCustomDomain } from "../scripts/deploy/toml.mjs";
import { observe, ObserveError } from "../scripts/deploy/wrangler.mjs";
import { startWorker, ROOT } from "./helpers/worker.mjs";

const TOML = readFileSync(join(ROOT, "wrangler.toml"), "utf8");
const CONFIG = parse(TOML);
const KV_ID = "4f2c1a0b9e8d7c6b5a49382716050403";
const ACCOUNT = { loggedIn: true, accounts: [{ id: "acc1", name: "Acme" }], accountIdSet: false };
const URL_ = "https://ehr.example.org";

/** wrangler.toml with the production environment provisioned (its KV id and URL written). */
function provisioned({ url = URL_, route = true } = {}) {
  let text = setEnvKvId(TOML, "production", "CONFIG", KV_ID);
  text = setEnvVar(text, "production", "PUBLIC_BASE_URL", url);
  if (route) text = addEnvCustomDomain(text, "production", new URL(url).hostname);
  return parse(text);
}
const ids = (plan) => plan.steps.map((s) => s.id);
const commands = (plan) => plan.steps.map((s) => s.command);

describe("the deploy plan", () => {
  test("not signed in (a blank account as far as it can tell): every step, in order, with its command", () => {
    const plan = planDeploy({ env: "production", url: URL_, config: CONFIG, observed: { loggedIn: false } });
    assert.deepEqual(ids(plan), ["login", "kv-create", "kv-config", "url-config", "admin-token", "deploy", "check"]);
    assert.deepEqual(commands(plan), [
      "npx wrangler login",
      "npx wrangler kv namespace create CONFIG --env production",
      'edit wrangler.toml: [[env.production.kv_namespaces]] CONFIG id = "<the id of production-CONFIG>"',
      'edit wrangler.toml: [env.production.vars] PUBLIC_BASE_URL = "https://ehr.example.org"; [env.production] routes = [{ pattern = "ehr.example.org", custom_domain = true }] (the zone ehr.example.org is in must be on this Cloudflare account)',
      "<32 random bytes, base64url> | npx wrangler secret put ADMIN_TOKEN --env production",
      "npx wrangler deploy --env production",
      "GET https://ehr.example.org/health (200), GET https://ehr.example.org/.well-known/openid-configuration (issuer https://ehr.example.org)",
    ]);
    assert.deepEqual(plan.steps[1].args, ["kv", "namespace", "create", "CONFIG", "--env", "production"]);
    assert.deepEqual(plan.steps[4].args, ["secret", "put", "ADMIN_TOKEN", "--env", "production"]);
    assert.deepEqual(plan.steps[5].args, ["deploy", "--env", "production"]);
    assert.equal(plan.worker, "smart-edge-production");
    assert.equal(plan.url, URL_);
    assert.match(plan.notes.join("\n"), /planned again once signed in/);
    assert.match(plan.notes.join("\n"), /SIGNING_KEYS is not set: the key vault generates/);
  });

  test("a blank account, signed in, with --signing-keys: the SIGNING_KEYS secret from scripts/generate-keys.mjs as well", () => {
    const observed = { ...ACCOUNT, namespaces: [{ id: "other", title: "staging-CONFIG" }], workerExists: false, secrets: [] };
    const plan = planDeploy({ env: "production", url: URL_, signingKeys: true, config: CONFIG, observed });
    assert.deepEqual(ids(plan), ["kv-create", "kv-config", "url-config", "admin-token", "signing-keys", "deploy", "check"]);
    assert.equal(plan.steps[4].command, "node scripts/generate-keys.mjs | npx wrangler secret put SIGNING_KEYS --env production");
    assert.equal(plan.steps[4].source, "generate-keys");
  });

  test("half provisioned: the namespace exists (its id is written, not created again) and ADMIN_TOKEN is set", () => {
    const observed = { ...ACCOUNT, namespaces: [{ id: KV_ID, title: "production-CONFIG" }], workerExists: true, secrets: ["ADMIN_TOKEN"] };
    const plan = planDeploy({ env: "production", url: URL_, config: CONFIG, observed });
    assert.deepEqual(ids(plan), ["kv-config", "url-config", "deploy", "check"]);
    assert.equal(plan.steps[0].command, `edit wrangler.toml: [[env.production.kv_namespaces]] CONFIG id = "${KV_ID}"`);
    assert.deepEqual(plan.steps[0].edit, { type: "kv-id", env: "production", binding: "CONFIG", title: "production-CONFIG", id: KV_ID });
  });

  test("complete: only the deploy (and its check), with or without --url repeating the configured one", () => {
    const observed = { ...ACCOUNT, namespaces: [{ id: KV_ID, title: "production-CONFIG" }], workerExists: true, secrets: ["ADMIN_TOKEN", "SIGNING_KEYS"] };
    for (const url of [undefined, URL_, `${URL_}/`]) {
      const plan = planDeploy({ env: "production", url, config: provisioned(), observed });
      assert.deepEqual(ids(plan), ["deploy", "check"], String(url));
      assert.deepEqual(plan.notes, []);
    }
    const keysAgain = planDeploy({ env: "production", signingKeys: true, config: provisioned(), observed });
    assert.deepEqual(ids(keysAgain), ["deploy", "check"], "existing signing keys are never replaced");
    assert.match(keysAgain.notes[0], /SIGNING_KEYS is already set/);
  });

  test("a workers.dev URL needs no custom domain; a new URL is written and its change noted", () => {
    const observed = { ...ACCOUNT, namespaces: [{ id: KV_ID, title: "production-CONFIG" }], workerExists: true, secrets: ["ADMIN_TOKEN"] };
    const dev = "https://smart-edge-production.acme.workers.dev";
    const plan = planDeploy({ env: "production", url: dev, config: provisioned(), observed });
    assert.deepEqual(ids(plan), ["url-config", "deploy", "check"]);
    assert.equal(plan.steps[0].command, `edit wrangler.toml: [env.production.vars] PUBLIC_BASE_URL = "${dev}"`);
    assert.equal(plan.steps[0].edit.customDomain, null);
    assert.match(plan.notes[0], /the issuer changes from https:\/\/ehr\.example\.org to https:\/\/smart-edge-production\.acme\.workers\.dev/);
  });

  test("bad --url values are refused with what to give instead", () => {
    const cases = [
      ["http://ehr.example.org", /must be https/],
      ["https://ehr.example.org/fhir", /origin only/],
      ["https://ehr.example.org?x=1", /origin only/],
      ["https://ehr.example.org/#top", /origin only/],
      ["https://ehr.example.org?", /origin only/],
      ["https://admin:pw@ehr.example.org", /origin only/],
      ["https://localhost:8787", /loopback/],
      ["https://127.0.0.1", /loopback/],
      ["ehr.example.org", /is not a URL/],
      ["https://other-worker.acme.workers.dev", /workers\.dev address is https:\/\/smart-edge-production\.<your-subdomain>\.workers\.dev/],
    ];
    for (const [url, message] of cases) {
      assert.throws(() => planDeploy({ env: "production", url, config: CONFIG, observed: { loggedIn: false } }), (e) => e instanceof PlanError && message.test(e.message), url);
    }
    assert.equal(validateUrl("https://EHR.example.org:8443/"), "https://ehr.example.org:8443");
    assert.throws(
      () => planDeploy({ env: "production", config: CONFIG, observed: { loggedIn: false } }),
      /PUBLIC_BASE_URL is empty for "production": pass --url https:\/\/<public host>/,
    );
  });

  test("an unknown or missing --env is refused, naming the environments of wrangler.toml", () => {
    assert.throws(() => planDeploy({ env: "prod", url: URL_, config: CONFIG, observed: { loggedIn: false } }), {
      message: 'unknown environment "prod": wrangler.toml defines "staging", "production" ([env.<name>] sections)',
    });
    assert.throws(() => planDeploy({ url: URL_, config: CONFIG, observed: { loggedIn: false } }), { message: "say which environment to deploy: --env staging or --env production" });
    const staging = planDeploy({ env: "staging", url: "https://staging.example.org", config: CONFIG, observed: { loggedIn: false } });
    assert.equal(staging.worker, "smart-edge-staging");
    assert.equal(staging.steps[1].command, "npx wrangler kv namespace create CONFIG --env staging");
  });

  test("an id in wrangler.toml that the account does not have, or a login with several accounts, stops the plan", () => {
    const observed = { ...ACCOUNT, namespaces: [{ id: "someone-else", title: "production-CONFIG" }], workerExists: false, secrets: [] };
    assert.throws(() => planDeploy({ env: "production", config: provisioned(), observed }), new RegExp(`id ${KV_ID} is not a KV namespace of this account`));
    const two = { loggedIn: true, accounts: [{ id: "a1", name: "One" }, { id: "a2", name: "Two" }], accountIdSet: false };
    assert.throws(() => planDeploy({ env: "production", url: URL_, config: CONFIG, observed: two }), /2 accounts: choose one with CLOUDFLARE_ACCOUNT_ID=<id>.*a1 \(One\), a2 \(Two\)/);
  });

  test("every environment of wrangler.toml repeats each binding and var of the top level, with DEV_ROUTES off", () => {
    for (const env of Object.keys(CONFIG.env)) assert.deepEqual(environmentProblems(CONFIG, env), [], env);
    const config = structuredClone(CONFIG);
    config.ratelimits = [{ name: "LOGIN_LIMIT", namespace_id: "1001", simple: { limit: 10, period: 60 } }];
    config.env.production.vars.DEV_ROUTES = "true";
    config.env.production.durable_objects.bindings.pop();
    assert.deepEqual(environmentProblems(config, "production"), [
      "[env.production] lacks the Durable Object binding EXPORTS of the top level",
      "[env.production] lacks the ratelimits binding LOGIN_LIMIT of the top level",
      '[env.production.vars] DEV_ROUTES must be "false" (the Worker refuses to serve a deployment with it on)',
    ]);
    assert.throws(() => planDeploy({ env: "production", url: URL_, config, observed: { loggedIn: false } }), /wrangler.toml is not ready for "production"/);
  });

  test("the printed plan numbers the steps and shows each command", () => {
    const plan = planDeploy({ env: "production", url: URL_, config: provisioned(), observed: { ...ACCOUNT, namespaces: [{ id: KV_ID, title: "x" }], secrets: ["ADMIN_TOKEN"] } });
    assert.equal(
      formatPlan(plan),
      [
        'Deploy plan for "production" (Worker smart-edge-production, issuer https://ehr.example.org):',
        "  1. deploy the Worker smart-edge-production",
        "       npx wrangler deploy --env production",
        "  2. check https://ehr.example.org",
        "       GET https://ehr.example.org/health (200), GET https://ehr.example.org/.well-known/openid-configuration (issuer https://ehr.example.org)",
        "  note: SIGNING_KEYS is not set: the key vault generates the signing keys on first use (--signing-keys supplies them instead)",
      ].join("\n"),
    );
  });
});

describe("the edits of wrangler.toml", () => {
  test("each changes one line of its own environment and keeps every comment", () => {
    const edited = setEnvKvId(TOML, "production", "CONFIG", KV_ID);
    const changed = (a, b) => a.split("\n").filter((line, i) => line !== b.split("\n")[i]);
    assert.deepEqual(changed(edited, TOML), [`id = "${KV_ID}"`]);
    assert.equal(parse(edited).env.staging.kv_namespaces[0].id, PLACEHOLDER_KV_ID, "staging untouched");
    assert.equal(parse(edited).kv_namespaces[0].id, PLACEHOLDER_KV_ID, "the top level untouched");
    const url = setEnvVar(edited, "production", "PUBLIC_BASE_URL", URL_);
    assert.deepEqual(changed(url, edited), [`PUBLIC_BASE_URL = "${URL_}"`]);
    assert.equal(parse(url).vars.PUBLIC_BASE_URL, "");
    assert.equal(url.split("\n").filter((l) => l.startsWith("#")).length, TOML.split("\n").filter((l) => l.startsWith("#")).length);
  });

  test("custom domains go into the environment's routes, one inline array", () => {
    const one = addEnvCustomDomain(TOML, "production", "ehr.example.org");
    assert.deepEqual(parse(one).env.production.routes.map((r) => ({ ...r })), [{ pattern: "ehr.example.org", custom_domain: true }]);
    assert.equal(parse(one).env.production.name, "smart-edge-production");
    assert.equal(parse(one).env.staging.routes, undefined);
    const two = addEnvCustomDomain(one, "production", "fhir.example.org");
    assert.deepEqual(parse(two).env.production.routes.map((r) => r.pattern), ["ehr.example.org", "fhir.example.org"]);
    assert.equal(two.split("\n").length, one.split("\n").length);
  });

  test("a section that is not there is an error, not a guess", () => {
    assert.throws(() => setEnvVar(TOML, "qa", "PUBLIC_BASE_URL", URL_), /no \[env\.qa\.vars\] section/);
    assert.throws(() => setEnvKvId(TOML, "production", "CACHE", KV_ID), /no \[\[env\.production\.kv_namespaces\]\] with binding = "CACHE"/);
  });
});

describe("reading wrangler's answers", () => {
  /** A stand-in for wrangler: the recorded output of each command. */
  const stand = (answers) => async (args) => {
    const answer = answers[args.slice(0, 2).join(" ")];
    assert.ok(answer, `unexpected wrangler ${args.join(" ")}`);
    return answer;
  };
  const whoami = { code: 0, stdout: JSON.stringify({ loggedIn: true, authType: "OAuth Token", email: "ops@example.org", accounts: [{ id: "acc1", name: "Acme" }] }), stderr: "" };

  test("signed in, the Worker not deployed yet (wrangler's 'not found' answer): no secrets", async () => {
    const observed = await observe(
      "production",
      stand({
        "whoami --json": whoami,
        "kv namespace": { code: 0, stdout: JSON.stringify([{ id: KV_ID, title: "production-CONFIG", supports_url_encoding: true }], null, "  "), stderr: "" },
        "secret list": {
          code: 1,
          stdout: "",
          stderr: 'X [ERROR] Worker "smart-edge-production" (env: production) not found.\n\nIf this is a new Worker, run `wrangler deploy` first to create it.\n',
        },
      }),
      {},
    );
    assert.deepEqual(observed, {
      loggedIn: true,
      email: "ops@example.org",
      accounts: [{ id: "acc1", name: "Acme" }],
      accountIdSet: false,
      namespaces: [{ id: KV_ID, title: "production-CONFIG" }],
      workerExists: false,
      secrets: [],
    });
  });

  test("a deployed Worker's secrets; any other failure is reported, not guessed", async () => {
    const answers = {
      "whoami --json": whoami,
      "kv namespace": { code: 0, stdout: "[]", stderr: "" },
      "secret list": { code: 0, stdout: JSON.stringify([{ name: "ADMIN_TOKEN", type: "secret_text" }]), stderr: "" },
    };
    const observed = await observe("production", stand(answers), { CLOUDFLARE_ACCOUNT_ID: "acc1" });
    assert.deepEqual([observed.workerExists, observed.secrets, observed.accountIdSet], [true, ["ADMIN_TOKEN"], true]);
    answers["secret list"] = { code: 1, stdout: "", stderr: "X [ERROR] A request to the Cloudflare API failed. Authentication error [code: 10000]" };
    await assert.rejects(observe("production", stand(answers), {}), (e) => e instanceof ObserveError && /secret list --env production --format json` failed \(exit 1\):\n.*Authentication error/.test(e.message));
  });

  test("not signed in ({loggedIn:false}, exit 1) is a state; an answer that is not wrangler's is an error", async () => {
    assert.deepEqual(await observe("production", stand({ "whoami --json": { code: 1, stdout: '\n{"loggedIn":false}\n', stderr: "" } })), { loggedIn: false });
    await assert.rejects(
      observe("production", stand({ "whoami --json": { code: 1, stdout: "", stderr: "X [ERROR] fetch failed" } })),
      (e) => e instanceof ObserveError && e.message === "`npx wrangler whoami --json` failed (exit 1):\nX [ERROR] fetch failed",
    );
  });
});

describe("npm run deploy, the real CLI and wrangler, offline and signed out", () => {
  const home = mkdtempSync(join(tmpdir(), "smart-edge-deploy-home-"));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDFLARE_")));
  Object.assign(env, { HOME: home, XDG_CONFIG_HOME: join(home, ".config"), WRANGLER_SEND_METRICS: "false" });
  const run = (...args) => spawnSync(process.execPath, [join(ROOT, "scripts", "deploy.mjs"), ...args], { cwd: ROOT, env, encoding: "utf8", timeout: 60_000 });

  test("--plan prints the whole plan of a blank account and changes nothing", () => {
    const result = run("--env", "production", "--url", URL_, "--plan");
    assert.equal(result.status, 0, result.stderr);
    const expected = formatPlan(planDeploy({ env: "production", url: URL_, config: CONFIG, observed: { loggedIn: false } }));
    assert.equal(result.stdout.trim(), expected);
    assert.equal(readFileSync(join(ROOT, "wrangler.toml"), "utf8"), TOML);
  });

  test("bad arguments are refused before wrangler is asked; without --yes and a terminal nothing is done", () => {
    const bad = run("--env", "production", "--url", "https://ehr.example.org/fhir");
    assert.equal(bad.status, 1);
    assert.equal(bad.stdout, "");
    assert.equal(bad.stderr.trim(), "deploy: --url https://ehr.example.org/fhir must be an origin only (https://host[:port]), without a path, query, fragment or credentials");
    const unknown = run("--env", "qa", "--plan");
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /unknown environment "qa"/);
    const flag = run("--env", "production", "--colour");
    assert.equal(flag.status, 1);
    assert.match(flag.stderr, /Unknown option '--colour'[\s\S]*usage: npm run deploy/);
    const unattended = run("--env", "production", "--url", URL_);
    assert.equal(unattended.status, 1);
    assert.match(unattended.stdout, /^Deploy plan for "production"/);
    assert.equal(unattended.stderr.trim(), "deploy: not a terminal: pass --yes to carry out the plan (or --plan to only print it)");
    assert.equal(readFileSync(join(ROOT, "wrangler.toml"), "utf8"), TOML);
  });
});

// A stand-in for the account: a wrangler executable answering whoami, kv namespace list/create,
// secret list/put, login and deploy from a JSON state file, as wrangler 4.86 prints them, and
// recording each call (its argv, and what came on stdin).
const STAND_IN = `#!/usr/bin/env node
const fs = require("node:fs");
const file = process.env.STAND_IN_STATE;
const state = JSON.parse(fs.readFileSync(file, "utf8"));
const argv = process.argv.slice(2);
const args = argv.filter((a, i) => a !== "--config" && argv[i - 1] !== "--config");
const env = args[args.indexOf("--env") + 1];
const stdin = args[0] === "secret" && args[1] === "put" ? fs.readFileSync(0, "utf8") : null;
state.calls.push({ args: argv, stdin });
const save = () => fs.writeFileSync(file, JSON.stringify(state));
const out = (text, code = 0) => { save(); process.stdout.write(text + "\\n"); process.exit(code); };
const cmd = args.slice(0, 2).join(" ");
if (cmd === "login") { state.loggedIn = true; out("Successfully logged in."); }
if (cmd === "whoami --json" && !state.loggedIn) out(JSON.stringify({ loggedIn: false }), 1);
if (!state.loggedIn) { save(); process.stderr.write("X [ERROR] You are not authenticated.\\n"); process.exit(1); }
if (cmd === "whoami --json") out(JSON.stringify({ loggedIn: true, email: "ops@example.org", accounts: [{ id: "acc1", name: "Acme" }] }));
if (cmd === "kv namespace" && args[2] === "list") out(JSON.stringify(state.namespaces, null, "  "));
if (cmd === "kv namespace" && args[2] === "create") {
  const id = "a".repeat(24) + String(state.namespaces.length).padStart(8, "0");
  state.namespaces.push({ id, title: env + "-" + args[3] });
  out('✨ Success!\\n[[kv_namespaces]]\\nbinding = "' + args[3] + '"\\nid = "' + id + '"');
}
if (cmd === "secret list") {
  if (!state.workers[env]) { save(); process.stderr.write('X [ERROR] Worker "smart-edge-' + env + '" (env: ' + env + ') not found.\\n\\nIf this is a new Worker, run \\\`wrangler deploy\\\` first to create it.\\n'); process.exit(1); }
  out(JSON.stringify(Object.keys(state.workers[env].secrets).map((name) => ({ name, type: "secret_text" }))));
}
if (cmd === "secret put") {
  state.workers[env] ??= { secrets: {}, deployed: false };
  state.workers[env].secrets[args[2]] = stdin;
  out("✨ Success! Uploaded secret " + args[2]);
}
if (cmd.startsWith("deploy")) {
  if (state.failDeploy) { save(); process.stderr.write("X [ERROR] A request to the Cloudflare API failed. [code: 10021]\\n"); process.exit(1); }
  state.workers[env] ??= { secrets: {}, deployed: false };
  state.workers[env].deployed = true;
  out("Deployed smart-edge-" + env);
}
save(); process.stderr.write("stand-in: unexpected " + args.join(" ") + "\\n"); process.exit(2);
`;

describe("npm run deploy carrying out its plan (a stand-in account)", () => {
  const dir = mkdtempSync(join(tmpdir(), "smart-edge-deploy-run-"));
  const config = join(dir, "wrangler.toml");
  const stateFile = join(dir, "state.json");
  writeFileSync(join(dir, "wrangler"), STAND_IN, { mode: 0o755 });
  writeFileSync(config, TOML);
  writeFileSync(stateFile, JSON.stringify({ loggedIn: false, namespaces: [], workers: {}, calls: [], failDeploy: true }));
  const env = { ...process.env, SMART_EDGE_WRANGLER: join(dir, "wrangler"), STAND_IN_STATE: stateFile };
  const run = (...args) => spawnSync(process.execPath, [join(ROOT, "scripts", "deploy.mjs"), "--config", config, ...args], { cwd: ROOT, env, encoding: "utf8", timeout: 60_000 });
  const state = () => JSON.parse(readFileSync(stateFile, "utf8"));

  test("from signed out to the deploy: signs in, plans again, creates and writes the KV id, the URL, ADMIN_TOKEN on stdin; stops at the failing deploy", () => {
    const result = run("--env", "production", "--url", URL_, "--yes");
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stderr, /^X \[ERROR\] A request to the Cloudflare API failed. \[code: 10021\]\ndeploy: step 5 \(deploy the Worker smart-edge-production\) failed: npx wrangler deploy --env production exited with 1 \(its output is above\)/);
    assert.match(result.stderr, /The steps before it are done; fix the cause and run the same command again/);
    const after = state();
    const calls = after.calls.map((c) => c.args.filter((a) => a !== "--config" && a !== config).join(" "));
    assert.deepEqual(calls, [
      "whoami --json",
      "login",
      "whoami --json",
      "kv namespace list",
      "secret list --env production --format json",
      "kv namespace create CONFIG --env production",
      "whoami --json",
      "kv namespace list",
      "secret list --env production --format json",
      "secret put ADMIN_TOKEN --env production",
      "deploy --env production",
    ]);
    assert.ok(after.calls.every((c) => c.args.includes("--config") && c.args.includes(config)), "wrangler reads the same file");
    // The token went on stdin only, and was shown once.
    const token = after.workers.production.secrets.ADMIN_TOKEN;
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(result.stdout.split(token).length - 1, 1);
    assert.ok(after.calls.every((c) => !c.args.join(" ").includes(token)));
    // wrangler.toml: the new id, the URL and its custom domain, in production only.
    const edited = parse(readFileSync(config, "utf8"));
    assert.equal(edited.env.production.kv_namespaces[0].id, after.namespaces[0].id);
    assert.equal(after.namespaces[0].title, "production-CONFIG");
    assert.equal(edited.env.production.vars.PUBLIC_BASE_URL, URL_);
    assert.deepEqual(edited.env.production.routes.map((r) => ({ ...r })), [{ pattern: "ehr.example.org", custom_domain: true }]);
    assert.deepEqual(edited.env.staging, CONFIG.env.staging);
    assert.equal(readFileSync(join(ROOT, "wrangler.toml"), "utf8"), TOML, "the project's own file untouched");
  });

  test("run again: only what is left (the deploy and its check)", () => {
    const result = run("--env", "production", "--plan");
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^Deploy plan for "production" \(Worker smart-edge-production, issuer https:\/\/ehr\.example\.org\):\n  1\. deploy the Worker smart-edge-production\n       npx wrangler deploy --env production\n  2\. check https:\/\/ehr\.example\.org\n/);
  });
});

describe("the Worker on a deployed host", () => {
  let unset;
  let pinned;
  before(async () => {
    [unset, pinned] = await Promise.all([
      startWorker({ bindings: { PUBLIC_BASE_URL: "", DEV_ROUTES: "false" } }),
      startWorker({ bindings: { PUBLIC_BASE_URL: URL_, DEV_ROUTES: "false" } }),
    ]);
  });
  after(async () => {
    await Promise.all([unset?.dispose(), pinned?.dispose()]);
  });
  const REASON = /^this deployment is misconfigured: PUBLIC_BASE_URL is empty, so the OAuth issuer would follow each request's Host header .* set PUBLIC_BASE_URL to the server's public https origin/;

  test("PUBLIC_BASE_URL empty: each refusal writes the reason and its fix to the Worker's log, and nothing of the request", async () => {
    // workerd's output reaches this process through Miniflare's stdio pipes.
    let output = "";
    const writes = [process.stdout.write, process.stderr.write];
    const capture = (original) =>
      function (chunk, ...rest) {
        output += String(chunk);
        return original.call(this, chunk, ...rest);
      };
    process.stdout.write = capture(writes[0]);
    process.stderr.write = capture(writes[1]);
    try {
      const res = await unset.mf.dispatchFetch(`${URL_}/auth/userinfo`, { headers: { Authorization: "Bearer token-never-logged-7f3a" } });
      assert.equal(res.status, 503);
      await res.arrayBuffer();
      for (let i = 0; i < 100 && !output.includes("PUBLIC_BASE_URL is empty"); i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      [process.stdout.write, process.stderr.write] = writes;
    }
    const lines = output.split("\n").filter((line) => line.includes("this deployment is misconfigured"));
    assert.equal(lines.length, 1, output);
    assert.match(lines[0], /PUBLIC_BASE_URL is empty, .* set PUBLIC_BASE_URL to the server's public https origin \(npm run deploy -- --env <name> --url https:\/\/…/);
    assert.ok(!output.includes("token-never-logged-7f3a"));
  });

  test("PUBLIC_BASE_URL empty: OAuth, OIDC, SMART and admin APIs answer 503 server_error with the fix", async () => {
    for (const origin of ["https://ehr.example.org", "https://smart-edge-production.acme.workers.dev", "http://ehr.example.org"]) {
      for (const [path, init] of [
        ["/.well-known/openid-configuration"],
        ["/.well-known/jwks.json"],
        ["/fhir/.well-known/smart-configuration"],
        ["/auth/token", { method: "POST", body: "grant_type=client_credentials", headers: { "Content-Type": "application/x-www-form-urlencoded" } }],
        ["/auth/register", { method: "POST", body: "{}", headers: { "Content-Type": "application/json" } }],
        ["/admin/settings"],
        ["/nothing-here"],
      ]) {
        const res = await unset.mf.dispatchFetch(origin + path, init);
        assert.equal(res.status, 503, `${origin}${path}`);
        assert.equal(res.headers.get("content-type"), "application/json");
        assert.equal(res.headers.get("cache-control"), "no-store");
        const body = await res.json();
        assert.equal(body.error, "server_error");
        assert.match(body.error_description, REASON);
      }
    }
    const cors = await unset.mf.dispatchFetch(`${URL_}/auth/token`, { method: "POST", headers: { Origin: "https://app.example" } });
    assert.equal(cors.headers.get("access-control-allow-origin"), "*", "a browser app can read why");
    await cors.arrayBuffer();
  });

  test("PUBLIC_BASE_URL empty: the FHIR API answers a 503 OperationOutcome, browser pages an error page", async () => {
    const fhir = await unset.mf.dispatchFetch(`${URL_}/fhir/Patient?name=smith`);
    assert.equal(fhir.status, 503);
    assert.equal(fhir.headers.get("content-type"), "application/fhir+json; charset=utf-8");
    const outcome = await fhir.json();
    assert.equal(outcome.resourceType, "OperationOutcome");
    assert.equal(outcome.issue[0].code, "exception");
    assert.match(outcome.issue[0].diagnostics, REASON);
    for (const path of ["/auth/authorize?response_type=code&client_id=lab-viewer", "/auth/manage", "/ehr/"]) {
      const page = await unset.mf.dispatchFetch(URL_ + path);
      assert.equal(page.status, 503, path);
      assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
      const html = await page.text();
      assert.match(html, /<h1>This server is not configured yet<\/h1>/);
      assert.match(html, /PUBLIC_BASE_URL is empty, so the OAuth issuer would follow each request&#39;s Host header/);
    }
  });

  test("PUBLIC_BASE_URL empty: /health still answers, so a deploy can be checked", async () => {
    const res = await unset.mf.dispatchFetch(`${URL_}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "ok" });
  });

  test("PUBLIC_BASE_URL empty on loopback (local development): served, the issuer is the request's origin", async () => {
    const { res, body } = await unset.json("/.well-known/openid-configuration");
    assert.equal(res.status, 200);
    assert.equal(body.issuer, unset.url);
    const port = new URL(unset.url).port;
    const local = await unset.mf.dispatchFetch(`http://localhost:${port}/fhir/.well-known/smart-configuration`);
    assert.equal(local.status, 200);
    assert.equal((await local.json()).issuer, `http://localhost:${port}`);
  });

  test("PUBLIC_BASE_URL set: served, and the issuer is that URL whatever the Host", async () => {
    for (const origin of [URL_, "https://smart-edge-production.acme.workers.dev", "http://attacker.example", pinned.url]) {
      const openid = await pinned.mf.dispatchFetch(`${origin}/.well-known/openid-configuration`);
      assert.equal(openid.status, 200, origin);
      const body = await openid.json();
      assert.equal(body.issuer, URL_, origin);
      assert.equal(body.token_endpoint, `${URL_}/auth/token`);
      const smart = await pinned.mf.dispatchFetch(`${origin}/fhir/.well-known/smart-configuration`);
      assert.equal((await smart.json()).issuer, URL_, origin);
    }
    const metadata = await pinned.mf.dispatchFetch("https://smart-edge-production.acme.workers.dev/fhir/metadata");
    assert.equal(metadata.status, 200);
    assert.equal((await metadata.json()).implementation.url, `${URL_}/fhir`);
  });
});
