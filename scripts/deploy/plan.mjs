// The guided deploy's planning, pure: what wrangler.toml says and what the account holds
// (observed through wrangler's own commands by scripts/deploy/wrangler.mjs) in, the ordered
// steps out, each with the exact command it runs. No I/O here, so every case is tested
// without an account (tests/deploy.test.mjs).

/** The id wrangler.toml ships for a namespace not created yet. */
export const PLACEHOLDER_KV_ID = "00000000000000000000000000000000";
/** The KV namespace every environment needs, and the secrets the deploy manages. */
export const KV_BINDING = "CONFIG";
export const ADMIN_TOKEN = "ADMIN_TOKEN";
export const SIGNING_KEYS = "SIGNING_KEYS";

/** A plan that cannot be made: the message says what to do. */
export class PlanError extends Error {}

/**
 * The public origin from `--url`: https, an origin only (no path, query, fragment or
 * credentials), not loopback. Returns its serialisation (`https://host[:port]`).
 */
export function validateUrl(input) {
  let url;
  try {
    url = new URL(input);
  } catch {
    throw new PlanError(`--url ${JSON.stringify(input)} is not a URL: give the public origin, e.g. --url https://ehr.example.org`);
  }
  if (url.protocol !== "https:") {
    throw new PlanError(`--url ${input} must be https (the OAuth issuer of a deployment; SMART apps and tokens need TLS)`);
  }
  if (url.username || url.password || url.pathname !== "/" || url.search || url.hash || /[?#]$/.test(input)) {
    throw new PlanError(`--url ${input} must be an origin only (https://host[:port]), without a path, query, fragment or credentials`);
  }
  const host = url.hostname;
  if (host === "localhost" || host.endsWith(".localhost") || /^127\./.test(host) || host === "[::1]") {
    throw new PlanError(`--url ${input} is a loopback address: give the address the deployment is reached at`);
  }
  return url.origin;
}

/**
 * Checks that the environment's section declares every binding and var of the top level
 * (wrangler does not inherit them) and keeps DEV_ROUTES off; returns the problems.
 */
export function environmentProblems(config, env) {
  const section = config.env?.[env] ?? {};
  const problems = [];
  const names = (bindings, key) => new Set((bindings ?? []).map((b) => b[key]));
  const missing = (top, own, what) => {
    for (const name of top) if (!own.has(name)) problems.push(`[env.${env}] lacks the ${what} ${name} of the top level`);
  };
  missing(Object.keys(config.vars ?? {}), new Set(Object.keys(section.vars ?? {})), "var");
  missing(names(config.kv_namespaces, "binding"), names(section.kv_namespaces, "binding"), "KV namespace");
  missing(names(config.durable_objects?.bindings, "name"), names(section.durable_objects?.bindings, "name"), "Durable Object binding");
  // Every other kind of binding (ratelimits, analytics_engine_datasets, services, …): an array
  // of tables with `binding` or `name`, not inherited either.
  for (const [key, value] of Object.entries(config)) {
    if (["vars", "kv_namespaces", "durable_objects", "migrations", "env", "assets", "build"].includes(key)) continue;
    if (Array.isArray(value) && value.every((v) => v && typeof v === "object" && ("binding" in v || "name" in v))) {
      const label = (v) => v.binding ?? v.name;
      missing(new Set(value.map(label)), new Set((section[key] ?? []).map(label)), `${key} binding`);
    }
  }
  if (section.vars?.DEV_ROUTES !== undefined && section.vars.DEV_ROUTES !== "false") {
    problems.push(`[env.${env}.vars] DEV_ROUTES must be "false" (the Worker refuses to serve a deployment with it on)`);
  }
  return problems;
}

/**
 * @param {object} input
 * @param {string} input.env          the wrangler environment (`--env`)
 * @param {string} [input.url]        `--url`, the public origin
 * @param {boolean} [input.signingKeys] `--signing-keys`: supply SIGNING_KEYS instead of letting the key vault generate them
 * @param {object} input.config       wrangler.toml, parsed
 * @param {object} input.observed     {loggedIn, accounts?: [{id,name}], accountIdSet?: boolean,
 *   namespaces?: [{id,title}], workerExists?: boolean, secrets?: string[]} (only loggedIn when not logged in)
 * @returns {{env: string, worker: string, url: string, steps: object[], notes: string[]}}
 */
export function planDeploy({ env, url, signingKeys = false, config, observed }) {
  const envs = Object.keys(config.env ?? {});
  if (!env) throw new PlanError(`say which environment to deploy: --env ${envs.join(" or --env ") || "<name>"}`);
  if (!envs.includes(env)) {
    throw new PlanError(`unknown environment "${env}": wrangler.toml defines ${envs.map((e) => `"${e}"`).join(", ") || "none"} ([env.<name>] sections)`);
  }
  const problems = environmentProblems(config, env);
  if (problems.length) throw new PlanError(`wrangler.toml is not ready for "${env}":\n  - ${problems.join("\n  - ")}`);

  const section = config.env[env];
  const worker = section.name ?? `${config.name}-${env}`;
  const flag = `--env ${env}`;
  const steps = [];
  const notes = [];

  // 1. Signed in. Until then nothing about the account is known: plan as for a blank one, and
  //    plan again once signed in.
  const loggedIn = observed.loggedIn === true;
  if (!loggedIn) {
    steps.push({ id: "login", kind: "wrangler", title: "sign in to Cloudflare", args: ["login"], command: "npx wrangler login" });
    notes.push("not signed in: the steps after the sign-in assume a blank account and are planned again once signed in");
  } else if ((observed.accounts?.length ?? 0) > 1 && !observed.accountIdSet && !config.account_id) {
    const list = observed.accounts.map((a) => `${a.id} (${a.name})`).join(", ");
    throw new PlanError(`this login has ${observed.accounts.length} accounts: choose one with CLOUDFLARE_ACCOUNT_ID=<id> npm run deploy …  (${list})`);
  }
  const namespaces = loggedIn ? (observed.namespaces ?? []) : [];
  const secrets = new Set(loggedIn ? (observed.secrets ?? []) : []);

  // 2. The KV namespace, `<env>-CONFIG` as wrangler names it, and its id in wrangler.toml.
  const kv = (section.kv_namespaces ?? []).find((k) => k.binding === KV_BINDING);
  if (!kv) throw new PlanError(`wrangler.toml: [env.${env}] has no [[env.${env}.kv_namespaces]] with binding = "${KV_BINDING}"`);
  const title = `${env}-${KV_BINDING}`;
  const configuredId = kv.id && kv.id !== PLACEHOLDER_KV_ID ? kv.id : null;
  const where = `[[env.${env}.kv_namespaces]] ${KV_BINDING}`;
  if (configuredId) {
    if (loggedIn && !namespaces.some((n) => n.id === configuredId)) {
      throw new PlanError(
        `wrangler.toml's ${where} id ${configuredId} is not a KV namespace of this account: signed in to the right account? ` +
          `(To create a new one, set it back to "${PLACEHOLDER_KV_ID}".)`,
      );
    }
  } else {
    const existing = namespaces.find((n) => n.title === title);
    if (!existing) {
      steps.push({
        id: "kv-create",
        kind: "wrangler",
        title: `create the KV namespace "${title}"`,
        args: ["kv", "namespace", "create", KV_BINDING, "--env", env],
        command: `npx wrangler kv namespace create ${KV_BINDING} ${flag}`,
      });
    }
    const id = existing?.id ?? null;
    steps.push({
      id: "kv-config",
      kind: "edit",
      title: `write the id of "${title}" into wrangler.toml`,
      edit: { type: "kv-id", env, binding: KV_BINDING, title, id },
      command: `edit wrangler.toml: ${where} id = "${id ?? `<the id of ${title}>`}"`,
    });
  }

  // 3. PUBLIC_BASE_URL (the issuer) and, for a custom domain, its route.
  const current = section.vars?.PUBLIC_BASE_URL ?? "";
  let origin;
  if (url !== undefined) {
    origin = validateUrl(url);
  } else if (current) {
    try {
      origin = validateUrl(current);
    } catch (e) {
      throw new PlanError(`[env.${env}.vars] PUBLIC_BASE_URL = "${current}" is not usable (${e.message.replace(/^--url \S+ /, "")}): pass --url https://…`);
    }
  } else {
    throw new PlanError(
      `PUBLIC_BASE_URL is empty for "${env}": pass --url https://<public host> (the issuer; the Worker refuses to serve a deployment without it). ` +
        `For the workers.dev address: --url https://${worker}.<your-subdomain>.workers.dev`,
    );
  }
  const host = new URL(origin).hostname;
  const workersDev = host.endsWith(".workers.dev");
  if (workersDev && host.split(".")[0] !== worker) {
    throw new PlanError(`--url ${origin}: this Worker's workers.dev address is https://${worker}.<your-subdomain>.workers.dev`);
  }
  const routes = section.routes ?? [];
  const routed = workersDev || routes.some((r) => r?.custom_domain && r.pattern === host);
  const edits = [];
  if (origin !== current) {
    edits.push(`[env.${env}.vars] PUBLIC_BASE_URL = "${origin}"`);
    if (current) notes.push(`the issuer changes from ${current} to ${origin}: tokens issued under the old one stop being accepted, and apps must use the new address`);
  }
  if (!routed) edits.push(`[env.${env}] routes = [{ pattern = "${host}", custom_domain = true }] (the zone ${host} is in must be on this Cloudflare account)`);
  if (edits.length) {
    steps.push({
      id: "url-config",
      kind: "edit",
      title: `set the public URL ${origin}`,
      edit: { type: "url", env, origin, customDomain: routed ? null : host },
      command: `edit wrangler.toml: ${edits.join("; ")}`,
    });
  }

  // 4. Secrets, through stdin (never on a command line).
  if (!secrets.has(ADMIN_TOKEN)) {
    steps.push({
      id: "admin-token",
      kind: "secret",
      title: `set the ${ADMIN_TOKEN} secret (generated here, shown once)`,
      secret: ADMIN_TOKEN,
      source: "random",
      args: ["secret", "put", ADMIN_TOKEN, "--env", env],
      command: `<32 random bytes, base64url> | npx wrangler secret put ${ADMIN_TOKEN} ${flag}`,
    });
  }
  if (signingKeys && !secrets.has(SIGNING_KEYS)) {
    steps.push({
      id: "signing-keys",
      kind: "secret",
      title: `set the ${SIGNING_KEYS} secret (an RS256 and an ES256 key, generated here)`,
      secret: SIGNING_KEYS,
      source: "generate-keys",
      args: ["secret", "put", SIGNING_KEYS, "--env", env],
      command: `node scripts/generate-keys.mjs | npx wrangler secret put ${SIGNING_KEYS} ${flag}`,
    });
  } else if (signingKeys) {
    notes.push(`${SIGNING_KEYS} is already set: left as it is (rotate keys with POST /admin/keys/rotate)`);
  } else if (!secrets.has(SIGNING_KEYS)) {
    notes.push(`${SIGNING_KEYS} is not set: the key vault generates the signing keys on first use (--signing-keys supplies them instead)`);
  }

  // 5. The deploy itself, then a check that it answers with the right issuer.
  steps.push({ id: "deploy", kind: "wrangler", title: `deploy the Worker ${worker}`, args: ["deploy", "--env", env], command: `npx wrangler deploy ${flag}` });
  steps.push({
    id: "check",
    kind: "check",
    title: `check ${origin}`,
    origin,
    command: `GET ${origin}/health (200), GET ${origin}/.well-known/openid-configuration (issuer ${origin})`,
  });
  return { env, worker, url: origin, steps, notes };
}

/** The plan as the operator reads it. */
export function formatPlan(plan) {
  const lines = [`Deploy plan for "${plan.env}" (Worker ${plan.worker}, issuer ${plan.url}):`];
  plan.steps.forEach((step, i) => lines.push(`  ${i + 1}. ${step.title}`, `       ${step.command}`));
  for (const note of plan.notes) lines.push(`  note: ${note}`);
  return lines.join("\n");
}
