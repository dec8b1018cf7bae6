// Backend Services through Python libraries nobody here wrote (issue 11): authlib's
// private_key_jwt with its default assertion header (no `kid`), and fhirclient 4.4's backend
// flow, which always asks for `launch/patient` next to its system scopes. Both run in the
// project's .venv (tests/python/requirements.txt) against the built Worker under workerd.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import * as jose from "jose";
import { startWorker, tempDir, ROOT } from "./helpers/worker.mjs";
import { seed, APP } from "./helpers/fixtures.mjs";

const run = promisify(execFile);
const PYTHON = join(ROOT, ".venv", "bin", "python");
const SCRIPT = join(ROOT, "tests", "python", "backend_clients.py");

let w;
const keys = {};
let privateJwkPath;

async function keyPair(alg, kid) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, privateJwk: await jose.exportJWK(privateKey), publicJwk: { ...(await jose.exportJWK(publicKey)), kid, alg } };
}

async function python(...args) {
  const { stdout } = await run(PYTHON, [SCRIPT, ...args], { encoding: "utf8" });
  return JSON.parse(stdout);
}

before(async () => {
  // The client registers two RS384 keys and an ES384 one; authlib signs with the second RS384
  // key and names none, so the server must try the registered keys of that algorithm.
  keys.es384 = await keyPair("ES384", "es384-1");
  keys.old = await keyPair("RS384", "rs384-old");
  keys.current = await keyPair("RS384", "rs384-current");
  privateJwkPath = join(tempDir("smart-edge-py-"), "key.json");
  writeFileSync(privateJwkPath, JSON.stringify(keys.current.privateJwk));
  w = await startWorker();
  await seed(w, {
    clients: [
      APP,
      {
        client_id: "py-backend",
        client_name: "py-backend",
        client_type: "backend",
        scope: "system/Patient.rs system/Observation.rs",
        jwks: { keys: [keys.es384.publicJwk, keys.old.publicJwk, keys.current.publicJwk] },
      },
    ],
  });
});
after(async () => {
  await w?.dispose();
});

test("authlib's private_key_jwt with its default header (no kid) gets a token", async () => {
  const out = await python("authlib", `${w.url}/auth/token`, "py-backend", privateJwkPath, "system/Patient.rs");
  assert.equal(out.assertion_header.kid, undefined, `authlib's default header names no key: ${JSON.stringify(out.assertion_header)}`);
  assert.equal(out.assertion_header.alg, "RS384");
  assert.equal(out.token.token_type, "Bearer");
  assert.equal(out.token.scope, "system/Patient.rs");
  const res = await w.fetch("/fhir/Patient?_count=1", { headers: { Authorization: `Bearer ${out.token.access_token}` } });
  assert.equal(res.status, 200);
});

test("an assertion without kid signed by an unregistered key is invalid_client, naming the keys tried", async () => {
  const stranger = await keyPair("RS384", "stranger");
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new jose.SignJWT({ iss: "py-backend", sub: "py-backend", aud: `${w.url}/auth/token`, exp: now + 120, jti: randomUUID() })
    .setProtectedHeader({ alg: "RS384", typ: "JWT" })
    .sign(stranger.privateKey);
  const res = await w.fetch("/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: assertion,
    }),
  });
  const body = await res.json();
  assert.equal(res.status, 401);
  assert.equal(body.error, "invalid_client");
  assert.equal(body.error_description, "the client_assertion signature does not verify with the registered key(s) tried: rs384-old, rs384-current");
});

test("fhirclient 4.4's backend flow gets the system scopes it may hold and reads with them", async () => {
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new jose.SignJWT({ iss: "py-backend", sub: "py-backend", aud: `${w.url}/auth/token`, exp: now + 240, jti: randomUUID() })
    .setProtectedHeader({ alg: "ES384", kid: "es384-1", typ: "JWT" })
    .sign(keys.es384.privateKey);
  const out = await python("fhirclient", `${w.url}/fhir`, "py-backend", assertion, "system/*.rs");
  assert.equal(out.asked, "launch/patient system/*.rs", "what fhirclient asks for");
  assert.equal(out.granted, "system/Patient.rs system/Observation.rs", "launch/patient dropped, the registration's system/ scopes granted");
  assert.equal(out.ready, true);
  assert.equal(out.bundle_type, "Bundle/searchset");
});
