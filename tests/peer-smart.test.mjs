// Self-check of the peer SMART server fixture (tests/helpers/peer-smart.mjs): the whole SMART
// App Launch flow driven with plain fetch, the way a browser would, redirects followed by hand.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { startPeerSmart, PATIENT_IDS } from "./helpers/peer-smart.mjs";

const CLIENT_ID = "sdk-e2e";
const APP_ORIGIN = "http://127.0.0.1:9999";
const REDIRECT_URI = `${APP_ORIGIN}/callback`;

const clients = [{ client_id: CLIENT_ID, redirect_uris: [REDIRECT_URI] }];
let peer;
let config;
let app; // the flows against `peer`
before(async () => {
  peer = await startPeerSmart({ clients });
  ({ config, ...app } = await flows(peer));
});
after(() => peer?.close());

// What a browser app does against one server, with fetch; redirects are followed by hand.
async function flows(server) {
  const config = await (await fetch(`${server.fhirBase}/.well-known/smart-configuration`)).json();

  // authorize -> interaction -> resume -> redirect_uri, keeping cookies like a browser.
  async function authorize({ scope, launch, aud = server.fhirBase, pkce = true, jar = new Map() }) {
    const verifier = randomBytes(32).toString("base64url");
    const state = randomBytes(8).toString("hex");
    const nonce = randomBytes(8).toString("hex");
    const params = new URLSearchParams({ response_type: "code", client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope, state, nonce, aud });
    if (launch) params.set("launch", launch);
    if (pkce) {
      params.set("code_challenge", createHash("sha256").update(verifier).digest("base64url"));
      params.set("code_challenge_method", "S256");
    }
    let url = `${config.authorization_endpoint}?${params}`;
    for (let hops = 0; hops < 10; hops++) {
      const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      const res = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(";");
        const eq = pair.indexOf("=");
        jar.set(pair.slice(0, eq), pair.slice(eq + 1));
      }
      const location = res.headers.get("location");
      assert.ok(location, `expected a redirect from ${url}, got ${res.status} ${await res.text()}`);
      url = new URL(location, url).href;
      if (url.startsWith(REDIRECT_URI)) {
        const q = new URL(url).searchParams;
        if (!q.get("error")) assert.equal(q.get("state"), state);
        return { code: q.get("code"), error: q.get("error"), verifier, nonce, jar };
      }
    }
    throw new Error("too many redirects");
  }

  async function tokenRequest(body, headers = {}) {
    const res = await fetch(config.token_endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams({ client_id: CLIENT_ID, ...body }),
    });
    return { res, json: await res.json() };
  }

  return {
    config,
    authorize,
    tokenRequest,
    exchange: ({ code, verifier }, headers) =>
      tokenRequest({ grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: REDIRECT_URI }, headers),
    fhirGet: (path, token) =>
      fetch(path.startsWith("http") ? path : `${server.fhirBase}/${path}`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      }),
    revoke: (token, hint) =>
      fetch(config.revocation_endpoint, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token, token_type_hint: hint, client_id: CLIENT_ID }),
      }),
  };
}

test("discovery: smart-configuration and CapabilityStatement", async () => {
  const res = await fetch(`${peer.fhirBase}/.well-known/smart-configuration`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(config.issuer, peer.issuer);
  assert.deepEqual(config.code_challenge_methods_supported, ["S256"]);
  for (const cap of ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient", "permission-v2", "permission-offline", "sso-openid-connect"]) {
    assert.ok(config.capabilities.includes(cap), cap);
  }
  const oidc = await (await fetch(`${peer.issuer}/.well-known/openid-configuration`)).json();
  assert.equal(oidc.issuer, config.issuer);
  assert.equal(oidc.token_endpoint, config.token_endpoint);

  const meta = await (await fetch(`${peer.fhirBase}/metadata`)).json();
  const uris = meta.rest[0].security.extension[0].extension;
  assert.equal(uris.find((e) => e.url === "authorize").valueUri, config.authorization_endpoint);
  assert.equal(uris.find((e) => e.url === "token").valueUri, config.token_endpoint);
  assert.equal(uris.find((e) => e.url === "revoke").valueUri, config.revocation_endpoint);
});

test("EHR launch: context in the token response, ID token, refresh rotation, revocation", async () => {
  const launch = peer.launch({ patient: PATIENT_IDS[1], encounter: "peer-enc-2" });
  const auth = await app.authorize({ scope: "openid fhirUser launch patient/*.rs offline_access", launch });
  assert.ok(auth.code, auth.error);

  // Cross-origin from the app: CORS must answer for the redirect URI's origin.
  const { res, json: tokens } = await app.exchange(auth, { origin: APP_ORIGIN });
  assert.equal(res.status, 200, JSON.stringify(tokens));
  assert.equal(res.headers.get("access-control-allow-origin"), APP_ORIGIN);
  assert.equal(tokens.token_type, "Bearer");
  assert.equal(tokens.patient, PATIENT_IDS[1]);
  assert.equal(tokens.encounter, "peer-enc-2");
  assert.equal(tokens.need_patient_banner, true);
  assert.equal(tokens.smart_style_url, `${peer.url}/style.json`);
  assert.ok(tokens.refresh_token);
  for (const s of ["openid", "fhirUser", "launch", "offline_access", "patient/*.rs"]) {
    assert.ok(tokens.scope.split(" ").includes(s), `scope ${tokens.scope} lacks ${s}`);
  }

  const jwks = createRemoteJWKSet(new URL(config.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(tokens.id_token, jwks, { issuer: peer.issuer, audience: CLIENT_ID });
  assert.equal(protectedHeader.alg, "RS256");
  assert.equal(payload.nonce, auth.nonce);
  assert.equal(payload.sub, "peer-user");
  assert.equal(payload.fhirUser, `${peer.fhirBase}/Practitioner/peer-dr`);

  const patient = await app.fhirGet(`Patient/${tokens.patient}`, tokens.access_token);
  assert.equal(patient.status, 200);
  assert.equal((await patient.json()).name[0].family, "Lindqvist");
  assert.equal((await app.fhirGet("Practitioner/peer-dr", tokens.access_token)).status, 200);
  assert.equal((await app.fhirGet("Encounter/peer-enc-2", tokens.access_token)).status, 200);
  assert.equal((await app.fhirGet("Patient/nope", tokens.access_token)).status, 404);

  // Refresh rotates the refresh token and keeps the launch context.
  const { res: refreshRes, json: refreshed } = await app.tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refresh_token });
  assert.equal(refreshRes.status, 200, JSON.stringify(refreshed));
  assert.equal(peer.refreshCount(), 1);
  assert.ok(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token);
  assert.equal(refreshed.patient, PATIENT_IDS[1]);
  assert.ok(refreshed.id_token);
  assert.equal((await app.fhirGet(`Patient/${PATIENT_IDS[1]}`, refreshed.access_token)).status, 200);

  // Revoking the refresh token revokes the grant, and with it every access token of it.
  const revoked = await app.revoke(refreshed.refresh_token, "refresh_token");
  assert.equal(revoked.status, 200);
  assert.equal(peer.revokedCount(), 1);
  const afterRevoke = await app.fhirGet(`Patient/${PATIENT_IDS[1]}`, refreshed.access_token);
  assert.equal(afterRevoke.status, 401);
  assert.match(afterRevoke.headers.get("www-authenticate"), /^Bearer /);
  const { json: reused } = await app.tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refresh_token });
  assert.equal(reused.error, "invalid_grant");
  assert.equal(peer.refreshCount(), 1);
});

test("standalone launch: default patient and paged Observation search", async () => {
  const auth = await app.authorize({ scope: "openid fhirUser launch/patient patient/Observation.rs patient/Patient.rs" });
  const { json: tokens } = await app.exchange(auth);
  assert.equal(tokens.patient, PATIENT_IDS[0]);
  assert.equal(tokens.need_patient_banner, true);
  assert.equal(tokens.refresh_token, undefined, "no offline_access, no refresh token");

  let url = `Observation?patient=${tokens.patient}&category=laboratory`;
  const sizes = [];
  const ids = new Set();
  while (url && sizes.length < 5) {
    const res = await app.fhirGet(url, tokens.access_token);
    assert.equal(res.status, 200);
    const bundle = await res.json();
    assert.equal(bundle.type, "searchset");
    assert.equal(bundle.total, 25);
    sizes.push(bundle.entry.length);
    for (const { resource } of bundle.entry) {
      ids.add(resource.id);
      assert.equal(resource.code.coding[0].system, "http://loinc.org");
      assert.ok(resource.valueQuantity.value > 0 && resource.referenceRange[0].low);
    }
    url = bundle.link.find((l) => l.relation === "next")?.url;
    if (url) assert.ok(url.startsWith(peer.fhirBase), "next links are absolute");
  }
  assert.deepEqual(sizes, [10, 10, 5]);
  assert.equal(ids.size, 25);
  const small = await (await app.fhirGet(`Observation?patient=${tokens.patient}&_count=7`, tokens.access_token)).json();
  assert.equal(small.entry.length, 7);

  // Revoking the access token itself.
  assert.equal((await app.revoke(tokens.access_token, "access_token")).status, 200);
  assert.equal((await app.fhirGet(`Patient/${tokens.patient}`, tokens.access_token)).status, 401);
});

test("a browser session is reused, but each launch gets its own context", async () => {
  const jar = new Map();
  const first = await app.authorize({ scope: "openid launch patient/*.rs", launch: peer.launch({ patient: PATIENT_IDS[0] }), jar });
  const second = await app.authorize({ scope: "openid launch patient/*.rs", launch: peer.launch({ patient: PATIENT_IDS[1] }), jar });
  assert.ok(jar.has("_session"));
  assert.equal((await app.exchange(first)).json.patient, PATIENT_IDS[0]);
  assert.equal((await app.exchange(second)).json.patient, PATIENT_IDS[1]);
});

test("rejections: wrong aud, unknown launch, missing PKCE, no or bad bearer token", async () => {
  assert.equal((await app.authorize({ scope: "openid patient/*.rs", aud: "https://elsewhere.example/fhir" })).error, "invalid_request");
  assert.equal((await app.authorize({ scope: "openid launch", launch: "forged" })).error, "invalid_request");
  assert.equal((await app.authorize({ scope: "openid patient/*.rs", pkce: false })).error, "invalid_request");

  const anonymous = await app.fhirGet(`Patient/${PATIENT_IDS[0]}`);
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.headers.get("www-authenticate").split(" ")[0], "Bearer");
  assert.equal(anonymous.headers.get("access-control-allow-origin"), "*");
  assert.equal((await app.fhirGet(`Patient/${PATIENT_IDS[0]}`, "not-a-token")).status, 401);

  const preflight = await fetch(`${peer.fhirBase}/Patient/${PATIENT_IDS[0]}`, {
    method: "OPTIONS",
    headers: { origin: APP_ORIGIN, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
  });
  assert.equal(preflight.status, 204);
  assert.match(preflight.headers.get("access-control-allow-headers"), /authorization/i);
});

test("expired access tokens are refused", async () => {
  const short = await startPeerSmart({ clients, accessTokenTTL: 1 });
  try {
    const { authorize, exchange, fhirGet } = await flows(short);
    const { json: tokens } = await exchange(await authorize({ scope: "openid patient/*.rs" }));
    assert.equal(tokens.expires_in, 1);
    assert.equal((await fhirGet(`Patient/${PATIENT_IDS[0]}`, tokens.access_token)).status, 200);
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal((await fhirGet(`Patient/${PATIENT_IDS[0]}`, tokens.access_token)).status, 401);
  } finally {
    await short.close();
  }
});
