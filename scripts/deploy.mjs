// npm run deploy -- --env production [--url https://ehr.example.org] [--signing-keys] [--plan] [--yes]
//
// Looks at the account through wrangler's own commands, plans what is missing (sign-in, the
// environment's KV namespace and its id in wrangler.toml, PUBLIC_BASE_URL and its custom
// domain, the ADMIN_TOKEN secret, optionally SIGNING_KEYS, the deploy, a check), prints the
// plan, and carries it out step by step unless --plan, stopping at the first failure. Running
// it again picks up where it stopped: every step is planned from what is already there.
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { createInterface } from "node:readline/promises";
import { parse } from "smol-toml";
import { planDeploy, formatPlan, PlanError } from "./deploy/plan.mjs";
import { setEnvVar, setEnvKvId, addEnvCustomDomain } from "./deploy/toml.mjs";
import { observe, runWrangler, ObserveError, ROOT } from "./deploy/wrangler.mjs";

const USAGE = `usage: npm run deploy -- --env <staging|production> [--url https://host] [--signing-keys] [--plan] [--yes] [--config wrangler.toml]
  --env           the wrangler environment ([env.<name>] in wrangler.toml)
  --url           the public origin (https, no path): PUBLIC_BASE_URL, the OAuth issuer
  --signing-keys  supply SIGNING_KEYS (else the key vault generates the keys on first use)
  --plan          print the plan and change nothing
  --yes           carry out the plan without asking
  --config        another wrangler configuration file (passed on to wrangler)`;

function fail(message) {
  console.error(`deploy: ${message}`);
  process.exit(1);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      env: { type: "string" },
      url: { type: "string" },
      "signing-keys": { type: "boolean", default: false },
      plan: { type: "boolean", default: false },
      yes: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      config: { type: "string" },
    },
  }));
} catch (e) {
  fail(`${e.message}\n${USAGE}`);
}
if (options.help) {
  console.log(USAGE);
  process.exit(0);
}

const CONFIG_PATH = options.config ? resolve(options.config) : join(ROOT, "wrangler.toml");
const readConfig = () => parse(readFileSync(CONFIG_PATH, "utf8"));
/** wrangler, on the same configuration file. */
const wrangler = (args, opts) => runWrangler(options.config ? [...args, "--config", CONFIG_PATH] : args, opts);

async function makePlan() {
  let config;
  try {
    config = readConfig();
  } catch (e) {
    fail(`wrangler.toml does not parse: ${e.message}`);
  }
  // Arguments that are wrong whatever the account holds are refused before asking wrangler.
  const input = { env: options.env, url: options.url, signingKeys: options["signing-keys"], config };
  try {
    planDeploy({ ...input, observed: { loggedIn: false } });
  } catch (e) {
    if (e instanceof PlanError) fail(e.message);
    throw e;
  }
  let observed;
  try {
    observed = await observe(options.env, wrangler);
  } catch (e) {
    if (e instanceof ObserveError) fail(e.message);
    throw e;
  }
  try {
    return { plan: planDeploy({ ...input, observed }), observed };
  } catch (e) {
    if (e instanceof PlanError) fail(e.message);
    throw e;
  }
}

function editConfig(change) {
  const before = readFileSync(CONFIG_PATH, "utf8");
  writeFileSync(CONFIG_PATH, change(before));
}

async function namespaceId(title) {
  const observed = await observe(options.env, wrangler);
  return observed.namespaces?.find((n) => n.title === title)?.id;
}

async function check(origin) {
  let last = "";
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      const health = await fetch(`${origin}/health`);
      if (health.status !== 200) throw new Error(`/health answered ${health.status}: ${(await health.text()).slice(0, 300)}`);
      const discovery = await fetch(`${origin}/.well-known/openid-configuration`);
      const body = await discovery.json().catch(() => ({}));
      if (discovery.status !== 200) throw new Error(`/.well-known/openid-configuration answered ${discovery.status}: ${body.error_description ?? ""}`);
      if (body.issuer !== origin) throw new Error(`the issuer is ${body.issuer}, not ${origin}`);
      return;
    } catch (e) {
      last = e.cause?.message ?? e.message;
      if (attempt < 10) await new Promise((r) => setTimeout(r, 6000));
    }
  }
  throw new Error(
    `${origin} is not serving as expected yet: ${last}\n` +
      `The deploy itself went through. A new custom domain can take a few minutes for its certificate; check again with: curl ${origin}/health`,
  );
}

async function carryOut(step) {
  switch (step.kind) {
    case "wrangler": {
      const result = await wrangler(step.args, { show: true });
      if (result.code !== 0) throw new Error(`${step.command} exited with ${result.code} (its output is above)`);
      return;
    }
    case "edit": {
      const { edit } = step;
      if (edit.type === "kv-id") {
        const id = edit.id ?? (await namespaceId(edit.title));
        if (!id) throw new Error(`no KV namespace "${edit.title}" in the account after creating it`);
        editConfig((text) => setEnvKvId(text, edit.env, edit.binding, id));
        console.log(`  wrangler.toml: [[env.${edit.env}.kv_namespaces]] ${edit.binding} id = "${id}"`);
      } else if (edit.type === "url") {
        editConfig((text) => setEnvVar(text, edit.env, "PUBLIC_BASE_URL", edit.origin));
        if (edit.customDomain) editConfig((text) => addEnvCustomDomain(text, edit.env, edit.customDomain));
        console.log(`  wrangler.toml: [env.${edit.env}.vars] PUBLIC_BASE_URL = "${edit.origin}"${edit.customDomain ? `, custom domain ${edit.customDomain}` : ""}`);
      }
      return;
    }
    case "secret": {
      const value =
        step.source === "random"
          ? randomBytes(32).toString("base64url")
          : execFileSync(process.execPath, [join(ROOT, "scripts", "generate-keys.mjs")], { encoding: "utf8" });
      const result = await wrangler(step.args, { input: value });
      if (result.code !== 0) throw new Error(`${step.command} exited with ${result.code}:\n${`${result.stdout}\n${result.stderr}`.trim()}`);
      if (step.source === "random") {
        console.log(`\n  ${step.secret} (shown this once; keep it in a password manager, it is the admin API's bearer token):\n\n    ${value}\n`);
      } else {
        console.log(`  ${step.secret} set`);
      }
      return;
    }
    case "check":
      await check(step.origin);
      console.log(`  ${step.origin}/health answers 200 and the issuer is ${step.origin}`);
      return;
    default:
      throw new Error(`unknown step kind ${step.kind}`);
  }
}

async function confirm(count) {
  if (options.yes) return true;
  if (!process.stdin.isTTY) fail("not a terminal: pass --yes to carry out the plan (or --plan to only print it)");
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  const answer = await rl.question(`\nCarry out these ${count} steps? [y/N] `);
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

let { plan } = await makePlan();
console.log(formatPlan(plan));
if (options.plan) process.exit(0);
if (!(await confirm(plan.steps.length))) fail("nothing done");

for (let i = 0; i < plan.steps.length; i++) {
  const step = plan.steps[i];
  console.log(`\n[${i + 1}/${plan.steps.length}] ${step.title}\n  $ ${step.command}`);
  try {
    await carryOut(step);
  } catch (e) {
    fail(`step ${i + 1} (${step.title}) failed: ${e.message}\nThe steps before it are done; fix the cause and run the same command again: it plans from what is already there.`);
  }
  if (step.id === "login") {
    // Now the account can be seen: plan the rest from what it really holds.
    ({ plan } = await makePlan());
    if (plan.steps[0]?.id === "login") fail("`wrangler login` returned, but wrangler still reports no sign-in (`npx wrangler whoami`)");
    console.log(`\nSigned in. ${formatPlan(plan)}`);
    i = -1;
  }
}
console.log(`\nDeployed "${plan.env}" at ${plan.url}. Commit wrangler.toml if the deploy changed it (the KV id, PUBLIC_BASE_URL).`);
