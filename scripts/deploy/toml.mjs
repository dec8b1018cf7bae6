// The guided deploy's edits of wrangler.toml, as small text edits that keep its comments and
// layout (a TOML library would rewrite the file). Each edit is checked by parsing the result:
// it must equal the parsed original with exactly that change, or the edit is refused.
import { parse } from "smol-toml";
import { isDeepStrictEqual } from "node:util";

/** Lines of the table whose header line matches `isHeader`, as [start, end) of the body. */
function tableBodies(lines, isHeader) {
  const bodies = [];
  lines.forEach((line, i) => {
    if (!isHeader(line.trim())) return;
    let end = i + 1;
    while (end < lines.length && !/^\s*\[/.test(lines[end])) end++;
    bodies.push([i + 1, end]);
  });
  return bodies;
}

const header = (name) => (line) => line.replace(/\s*#.*$/, "") === name;
const keyLine = (key) => new RegExp(`^\\s*${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*=`);
const str = (value) => JSON.stringify(value);

/** Sets `key = value` (value already TOML) in the table's body, replacing its line or adding one after the header. */
function setKey(lines, [start, end], key, value) {
  const at = lines.slice(start, end).findIndex((line) => keyLine(key).test(line));
  if (at >= 0) lines[start + at] = `${key} = ${value}`;
  else lines.splice(start, 0, `${key} = ${value}`);
}

// Plain data (smol-toml's tables have no prototype), for comparing.
const plain = (text) => JSON.parse(JSON.stringify(parse(text)));

function checked(before, after, change) {
  const expected = plain(before);
  change(expected);
  if (!isDeepStrictEqual(plain(after), expected)) throw new Error("wrangler.toml: the edit did not come out as intended; make it by hand");
  return after;
}

/** `[env.<env>.vars] <key> = "<value>"`. */
export function setEnvVar(text, env, key, value) {
  const lines = text.split("\n");
  const [body] = tableBodies(lines, header(`[env.${env}.vars]`));
  if (!body) throw new Error(`wrangler.toml has no [env.${env}.vars] section`);
  setKey(lines, body, key, str(value));
  return checked(text, lines.join("\n"), (c) => (c.env[env].vars[key] = value));
}

/** The id of the `[[env.<env>.kv_namespaces]]` entry whose binding is `binding`. */
export function setEnvKvId(text, env, binding, id) {
  const lines = text.split("\n");
  const body = tableBodies(lines, header(`[[env.${env}.kv_namespaces]]`)).find(([s, e]) =>
    lines.slice(s, e).some((line) => new RegExp(`^\\s*binding\\s*=\\s*"${binding}"`).test(line)),
  );
  if (!body) throw new Error(`wrangler.toml has no [[env.${env}.kv_namespaces]] with binding = "${binding}"`);
  setKey(lines, body, "id", str(id));
  return checked(text, lines.join("\n"), (c) => (c.env[env].kv_namespaces.find((k) => k.binding === binding).id = id));
}

/** Adds a custom-domain route for `host` to `[env.<env>] routes` (kept as one inline array). */
export function addEnvCustomDomain(text, env, host) {
  const lines = text.split("\n");
  const [body] = tableBodies(lines, header(`[env.${env}]`));
  if (!body) throw new Error(`wrangler.toml has no [env.${env}] section`);
  const routes = [...(parse(text).env[env].routes ?? []), { pattern: host, custom_domain: true }];
  const value = `[${routes.map((r) => (typeof r === "string" ? str(r) : `{ ${Object.entries(r).map(([k, v]) => `${k} = ${str(v)}`).join(", ")} }`)).join(", ")}]`;
  // After the table's existing keys (name = …), before its trailing comments and blank lines.
  let [start, end] = body;
  const at = lines.slice(start, end).findIndex((line) => keyLine("routes").test(line));
  if (at >= 0) {
    if (/\[\s*$/.test(lines[start + at])) throw new Error(`wrangler.toml: [env.${env}] routes spans several lines; add the custom domain ${host} by hand`);
    lines[start + at] = `routes = ${value}`;
  } else {
    while (end > start && !/^\s*[A-Za-z0-9_"-]+\s*=/.test(lines[end - 1])) end--;
    lines.splice(end, 0, `routes = ${value}`);
  }
  return checked(text, lines.join("\n"), (c) => (c.env[env].routes = JSON.parse(JSON.stringify(routes))));
}
