// The guided deploy's only contact with the account: wrangler's own commands, run from the
// project's node_modules. `observe` turns their output into the state scripts/deploy/plan.mjs
// plans from; `runWrangler` runs one command (its output shown, or captured).
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
// SMART_EDGE_WRANGLER: another wrangler executable (tests/deploy.test.mjs runs a stand-in account).
const WRANGLER = process.env.SMART_EDGE_WRANGLER || join(ROOT, "node_modules", ".bin", "wrangler");

/**
 * Runs `wrangler <args>` in the project root. `input` goes to its stdin (secrets); `show`
 * passes its output through to the terminal (and stdin too when there is no input: login).
 * @returns {Promise<{code: number, stdout: string, stderr: string}>}
 */
export function runWrangler(args, { input, show = false, env = process.env } = {}) {
  return new Promise((resolve, reject) => {
    const stdio = [input !== undefined ? "pipe" : show ? "inherit" : "ignore", show ? "inherit" : "pipe", show ? "inherit" : "pipe"];
    const child = spawn(WRANGLER, args, { cwd: ROOT, stdio, env: { WRANGLER_SEND_METRICS: "false", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d) => (stdout += d));
    child.stderr?.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    if (input !== undefined) child.stdin.end(input);
  });
}

/** The JSON value in a command's output (wrangler may print a blank line or a warning around it). */
export function jsonIn(text, open = "{") {
  const close = open === "{" ? "}" : "]";
  const start = text.indexOf(open);
  const end = text.lastIndexOf(close);
  if (start < 0 || end < start) return undefined;
  try {
    return JSON.parse(text.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

/** Thrown when wrangler answers in a way the deploy cannot read. */
export class ObserveError extends Error {}

function unreadable(command, result) {
  const output = `${result.stdout}\n${result.stderr}`.trim().split("\n").slice(-8).join("\n");
  return new ObserveError(`\`npx wrangler ${command}\` failed (exit ${result.code}):\n${output}`);
}

/**
 * What the account holds for environment `env`, through `wrangler whoami --json`,
 * `wrangler kv namespace list` and `wrangler secret list --env <env> --format json`.
 * `run` is `runWrangler` (a stand-in in the parsing tests).
 */
export async function observe(env, run = runWrangler, processEnv = process.env) {
  const who = await run(["whoami", "--json"]);
  const identity = jsonIn(who.stdout);
  if (identity?.loggedIn === false) return { loggedIn: false };
  if (who.code !== 0 || identity?.loggedIn !== true) throw unreadable("whoami --json", who);
  const observed = {
    loggedIn: true,
    email: identity.email,
    accounts: (identity.accounts ?? []).map((a) => ({ id: a.id, name: a.name })),
    accountIdSet: Boolean(processEnv.CLOUDFLARE_ACCOUNT_ID),
  };
  // Several accounts and none chosen: the other commands would stop and ask; the plan says how to choose.
  if (observed.accounts.length > 1 && !observed.accountIdSet) return observed;

  const kv = await run(["kv", "namespace", "list"]);
  const namespaces = jsonIn(kv.stdout, "[");
  if (kv.code !== 0 || !Array.isArray(namespaces)) throw unreadable("kv namespace list", kv);
  observed.namespaces = namespaces.map((n) => ({ id: n.id, title: n.title }));

  const list = await run(["secret", "list", "--env", env, "--format", "json"]);
  const secrets = jsonIn(list.stdout, "[");
  if (list.code === 0 && Array.isArray(secrets)) {
    observed.workerExists = true;
    observed.secrets = secrets.map((s) => s.name);
  } else if (/not found/i.test(`${list.stdout}\n${list.stderr}`) && /If this is a new Worker/.test(`${list.stdout}\n${list.stderr}`)) {
    // wrangler: 'Worker "<name>" (env: <env>) not found. If this is a new Worker, run `wrangler deploy` first …'
    observed.workerExists = false;
    observed.secrets = [];
  } else {
    throw unreadable(`secret list --env ${env} --format json`, list);
  }
  return observed;
}
