#!/usr/bin/env node
// Backup and restore of a smart-edge deployment through its admin API (README, "Backup and
// restore"):
//   ADMIN_TOKEN=… node scripts/backup.mjs backup  --url URL --out FILE
//   ADMIN_TOKEN=… node scripts/backup.mjs restore --url URL --in FILE
// (npm run backup -- … / npm run restore -- …). The token is read from the environment and
// never printed; progress goes to stderr.
import { createReadStream, createWriteStream, renameSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { once } from "node:events";
import { parseArgs } from "node:util";

/** Lines per restore page (`--page-lines`), and bytes (the server reads at most 32 MiB). */
let PAGE_LINES = 500;
const PAGE_BYTES = 8 * 1024 * 1024;

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function usage() {
  fail("usage: ADMIN_TOKEN=… npm run backup -- --url URL --out FILE [--page-lines N]\n       ADMIN_TOKEN=… npm run restore -- --url URL --in FILE [--page-lines N]");
}

const [command, ...rest] = process.argv.slice(2);
let options;
try {
  options = parseArgs({ args: rest, options: { url: { type: "string" }, out: { type: "string" }, in: { type: "string" }, "page-lines": { type: "string" } } }).values;
} catch (e) {
  fail(e.message);
}
const token = process.env.ADMIN_TOKEN;
if (!token) fail("set ADMIN_TOKEN in the environment (the deployment's admin token)");
if (!options.url) usage();
const base = options.url.replace(/\/$/, "");
// Smaller pages (backup: at most 1,000 lines each, the server's bound; restore: 500 by default).
const pageLines = options["page-lines"] === undefined ? null : Number(options["page-lines"]);
if (pageLines !== null && !(Number.isInteger(pageLines) && pageLines > 0)) fail("--page-lines wants a positive whole number");
if (pageLines !== null) PAGE_LINES = pageLines;
const auth = { Authorization: `Bearer ${token}` };

/** The `rel="next"` target of a Link header, resolved against `from`; only on the same
 * origin (the admin token goes with it). */
function nextLink(header, from) {
  const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(header ?? "");
  if (!match) return null;
  const next = new URL(match[1], from);
  if (next.origin !== new URL(from).origin) throw new Error(`the next page is on another origin (${next.origin}): not sending the admin token there`);
  return next.toString();
}

async function explain(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    return `${res.status} ${body.error ?? ""}: ${body.error_description ?? text}`;
  } catch {
    return `${res.status}: ${text.slice(0, 500)}`;
  }
}

async function backup(file) {
  const partial = `${file}.partial`;
  const out = createWriteStream(partial, { mode: 0o600 });
  let url = `${base}/admin/backup${pageLines === null ? "" : `?lines=${pageLines}`}`;
  let pages = 0;
  let lines = 0;
  let first = true;
  let last = "";
  try {
    while (url) {
      const res = await fetch(url, { headers: auth });
      if (res.status !== 200) throw new Error(`GET ${new URL(url).pathname} answered ${await explain(res)}`);
      const body = await res.text();
      const pageLines = body.split("\n").filter((l) => l.length > 0);
      if (first && JSON.parse(pageLines[0] ?? "{}").kind !== "header") throw new Error("the first page does not start with a header line");
      first = false;
      if (!out.write(pageLines.map((l) => `${l}\n`).join(""))) await once(out, "drain");
      pages += 1;
      lines += pageLines.length;
      last = pageLines.at(-1) ?? last;
      process.stderr.write(`backup: page ${pages}, ${lines} lines\n`);
      url = nextLink(res.headers.get("link"), url);
    }
    if (JSON.parse(last).kind !== "end") throw new Error("the last page does not end with an end line");
    out.end();
    await once(out, "finish");
    renameSync(partial, file);
    process.stderr.write(`backup: done, ${lines} lines in ${file} (it holds private keys and password hashes: keep it like a secret)\n`);
  } catch (e) {
    out.destroy();
    rmSync(partial, { force: true });
    fail(`backup failed: ${e.message}`);
  }
}

/** The first and last non-empty lines' kinds (a first pass, so an incomplete file sends nothing). */
async function frame(file) {
  let first = null;
  let last = null;
  for await (const line of createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity })) {
    if (line.trim() === "") continue;
    first ??= line;
    last = line;
  }
  const kind = (line) => {
    try {
      return JSON.parse(line).kind;
    } catch {
      return null;
    }
  };
  return { first: first && kind(first), last: last && kind(last) };
}

async function restore(file) {
  const { first, last } = await frame(file).catch((e) => fail(`restore failed: ${e.message}`));
  if (first !== "header") fail(`restore failed: ${file} does not start with a backup header line`);
  if (last !== "end") fail(`restore failed: ${file} does not end with the backup's end line (an incomplete backup); nothing was sent`);
  const reader = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Infinity });
  let header = null;
  let page = [];
  let pageStart = 0; // file line number of the page's first line after the header
  let bytes = 0;
  let lineNo = 0;
  let pages = 0;
  let sent = 0;

  const send = async () => {
    const body = `${header}\n${page.join("\n")}\n`;
    const res = await fetch(`${base}/admin/restore`, { method: "POST", headers: { ...auth, "Content-Type": "application/x-ndjson" }, body });
    if (res.status !== 200) {
      const text = await res.text();
      let description = text;
      try {
        description = JSON.parse(text).error_description ?? text;
      } catch {}
      // The server numbers the lines of the page (1 = the header): say which line of the file.
      const match = /^line (\d+): (.*)$/s.exec(description);
      if (match) {
        const n = Number(match[1]);
        description = `line ${n === 1 ? 1 : pageStart + n - 2} of ${file}: ${match[2]}`;
      }
      fail(`restore failed (HTTP ${res.status}): ${description}\nNothing of that page was written if the line was refused; pages before it were. Fix the cause and run the same command again: pages already written are written again, unchanged.`);
    }
    const answer = await res.json();
    pages += 1;
    sent += page.length;
    process.stderr.write(`restore: page ${pages}, ${sent} lines${answer.finished ? ", finished" : ""}\n`);
    page = [];
    bytes = 0;
  };

  for await (const line of reader) {
    lineNo += 1;
    if (line.trim() === "") continue;
    if (header === null) {
      header = line;
      continue;
    }
    if (page.length === 0) pageStart = lineNo;
    page.push(line);
    bytes += line.length + 1;
    if (page.length >= PAGE_LINES || bytes >= PAGE_BYTES) await send();
  }
  if (page.length > 0) await send();
  process.stderr.write(`restore: done, ${sent + 1} lines from ${file}\n`);
}

if (command === "backup" && options.out) {
  await backup(options.out);
} else if (command === "restore" && options.in) {
  await restore(options.in);
} else {
  usage();
}
