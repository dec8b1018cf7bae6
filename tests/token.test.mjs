// The token endpoint and the token lifecycle on workerd: code exchange with PKCE, JWT access
// tokens (RFC 9068) and ID tokens checked with jose against the published JWKS, refresh
// rotation and reuse detection, code replay, confidential clients, introspection, revocation,
// userinfo, and the exact error of every bad request.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import * as jose from "jose";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { seed, APP, REDIRECT, PRACTITIONER, NED } from "./helpers/fixtures.mjs";
import { authorize, exchange, refresh, form } from "./helpers/flows.mjs";

const SECRET = "s".repeat(48);
const CONFIDENTIAL = { ...APP, client_id: "confidential-app", client_type: "confidential-symmetric", client_secrets: [SECRET], consent: "pre-approved" };
const ONLINE = { ...APP, client_id: "online-app", scope: "openid online_access offline_access patient/*.rs launch/patient", consent: "pre-approved" };
// Registered as a resource server: it may introspect every client's tokens.
const RESOURCE_SERVER = { ...CONFIDENTIAL, client_id: "resource-server", resource_server: true };
const LAB = { ...APP, client_id: "lab-app", scope: "launch/patient openid offline_access patient/Observation.rs?category=laboratory", consent: "pre-approved" };

let w;
let jwks;
before(async () => {
  w = await startWorker();
  await seed(w, { clients: [APP, CONFIDENTIAL, ONLINE, RESOURCE_SERVER, LAB] });
  jwks = jose.createRemoteJWKSet(new URL(`${w.url}/.well-known/jwks.json`));
});
after(() => w.dispose());

const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

async function introspect(token, auth = basic(RESOURCE_SERVER.client_id, SECRET)) {
  const headers = { "Content-Type": "application/x-www-form-urlencoded", ...(auth ? { Authorization: auth } : {}) };
  const res = await w.fetch("/auth/introspect", { ...form({ token }), headers });
  return { res, body: await res.json() };
}

function assertError({ res, body }, status, error) {
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error, error, body.error_description);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.equal(res.headers.get("pragma"), "no-cache");
}

describe("authorization_code", () => {
  test("exchange: access token, ID token, refresh token and launch context, verified independently", async () => {
    const { code, verifier } = await authorize(w);
    const { res, body } = await exchange(w, code, verifier);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.headers.get("pragma"), "no-cache");
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 3600);
    assert.equal(body.scope, "launch/patient openid fhirUser offline_access patient/*.rs");
    assert.equal(body.patient, NED);
    assert.equal(body.need_patient_banner, true);
    assert.match(body.refresh_token, /^[0-9a-f]{64}\.[A-Za-z0-9_-]{43}$/);

    const access = await jose.jwtVerify(body.access_token, jwks, { issuer: w.url, audience: `${w.url}/fhir`, typ: "at+jwt", algorithms: ["ES256"] });
    assert.equal(access.payload.client_id, APP.client_id);
    assert.equal(access.payload.sub, PRACTITIONER.username);
    assert.equal(access.payload.scope, body.scope);
    assert.equal(access.payload.patient, NED);
    assert.equal(access.payload.exp - access.payload.iat, 3600);
    assert.ok(access.payload.jti);

    const id = await jose.jwtVerify(body.id_token, jwks, { issuer: w.url, audience: APP.client_id, algorithms: ["RS256"] });
    assert.ok(id.protectedHeader.kid);
    assert.equal(id.payload.sub, PRACTITIONER.username);
    assert.ok(id.payload.sub.length < 256);
    assert.equal(id.payload.nonce, "nonce-1");
    assert.equal(id.payload.fhirUser, `${w.url}/fhir/${PRACTITIONER.fhir_user}`);
    assert.ok(id.payload.auth_time <= id.payload.iat);
  });

  test("a replayed code fails and revokes what the first exchange issued", async () => {
    const { code, verifier } = await authorize(w);
    const first = await exchange(w, code, verifier);
    assert.equal(first.res.status, 200);
    assertError(await exchange(w, code, verifier), 400, "invalid_grant");
    assertError(await refresh(w, first.body.refresh_token), 400, "invalid_grant");
    assert.deepEqual((await introspect(first.body.access_token)).body, { active: false });
    const userinfo = await w.fetch("/auth/userinfo", { headers: { Authorization: `Bearer ${first.body.access_token}` } });
    assert.equal(userinfo.status, 401);
  });

  test("50 concurrent exchanges of one code: exactly one succeeds", async () => {
    const { code, verifier } = await authorize(w);
    const results = await Promise.all(Array.from({ length: 50 }, () => exchange(w, code, verifier)));
    const ok = results.filter((r) => r.res.status === 200);
    assert.equal(ok.length, 1);
    for (const r of results.filter((r) => r.res.status !== 200)) assertError(r, 400, "invalid_grant");
  });

  test("each bad exchange gets its exact error", async () => {
    const { code, verifier } = await authorize(w);
    assertError(await exchange(w, code, "x".repeat(43)), 400, "invalid_grant");
    assertError(await exchange(w, code, verifier, { redirect_uri: `${REDIRECT}/other` }), 400, "invalid_grant");
    assertError(await exchange(w, code, verifier, { code_verifier: undefined }), 400, "invalid_request");
    assertError(await exchange(w, code, verifier, { client_id: "nobody" }), 401, "invalid_client");
    assertError(await exchange(w, code, verifier, { client_id: ONLINE.client_id }), 400, "invalid_grant");
    assertError(await exchange(w, "not-a-code", verifier), 400, "invalid_grant");
    assertError(await exchange(w, `${"0".repeat(64)}.abc`, verifier), 400, "invalid_grant");
    assertError(await exchange(w, code, verifier, { grant_type: "password" }), 400, "unsupported_grant_type");
    assertError(await exchange(w, code, verifier, { grant_type: undefined }), 400, "invalid_request");
    const dup = await w.fetch("/auth/token", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: `grant_type=authorization_code&code=${code}&code=${code}&code_verifier=${verifier}&client_id=test-app` });
    assertError({ res: dup, body: await dup.json() }, 400, "invalid_request");
    const json = await w.fetch("/auth/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    assertError({ res: json, body: await json.json() }, 400, "invalid_request");
    const huge = await w.fetch("/auth/token", form({ grant_type: "authorization_code", code: "x".repeat(100000) }));
    assertError({ res: huge, body: await huge.json() }, 400, "invalid_request");
    // After all those failures the code still works once.
    assert.equal((await exchange(w, code, verifier)).res.status, 200);
  });
});

describe("refresh_token", () => {
  test("rotation: the same scopes, a narrower subset, never more; the new token replaces the old", async () => {
    const { code, verifier } = await authorize(w);
    const first = (await exchange(w, code, verifier)).body;
    const second = await refresh(w, first.refresh_token);
    assert.equal(second.res.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.scope, first.scope);
    assert.notEqual(second.body.refresh_token, first.refresh_token);
    assert.equal(second.body.patient, NED);
    // The ID token is the code exchange's only: a refresh response omits it (OpenID Connect
    // Core §12.2), and clients keep the first one.
    assert.ok(first.id_token);
    assert.equal(second.body.id_token, undefined);
    const narrow = await refresh(w, second.body.refresh_token, { scope: "patient/Observation.rs" });
    assert.equal(narrow.res.status, 200);
    assert.equal(narrow.body.scope, "patient/Observation.rs");
    assertError(await refresh(w, narrow.body.refresh_token, { scope: "patient/*.cruds" }), 400, "invalid_scope");
    assertError(await refresh(w, narrow.body.refresh_token, { client_id: CONFIDENTIAL.client_id }), 401, "invalid_client");
    assertError(await refresh(w, "garbage"), 400, "invalid_grant");
  });

  test("two tabs refreshing with the same token inside the grace window get the same new token", async () => {
    const { code, verifier } = await authorize(w);
    const first = (await exchange(w, code, verifier)).body;
    const [a, b] = await Promise.all([refresh(w, first.refresh_token), refresh(w, first.refresh_token)]);
    assert.equal(a.res.status, 200);
    assert.equal(b.res.status, 200);
    assert.equal(a.body.refresh_token, b.body.refresh_token);
  });

  test("reuse of a rotated-out refresh token after the grace window revokes the whole grant", async () => {
    await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ refresh_grace_secs: 0 }) });
    try {
      const { code, verifier } = await authorize(w);
      const first = (await exchange(w, code, verifier)).body;
      const second = (await refresh(w, first.refresh_token)).body;
      assertError(await refresh(w, first.refresh_token), 400, "invalid_grant");
      assertError(await refresh(w, second.refresh_token), 400, "invalid_grant");
      assert.deepEqual((await introspect(second.access_token)).body, { active: false });
    } finally {
      await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({}) });
    }
  });

  test("online_access ends with the user's session, offline_access outlives it", async () => {
    const agent = new Agent(w.url);
    const online = await authorize(w, { client_id: ONLINE.client_id, scope: "openid online_access launch/patient patient/*.rs", agent });
    const offline = await authorize(w, { client_id: ONLINE.client_id, scope: "openid offline_access launch/patient patient/*.rs", agent });
    const onlineTokens = (await exchange(w, online.code, online.verifier, { client_id: ONLINE.client_id })).body;
    const offlineTokens = (await exchange(w, offline.code, offline.verifier, { client_id: ONLINE.client_id })).body;
    assert.ok(onlineTokens.refresh_token && offlineTokens.refresh_token);
    assert.equal((await refresh(w, onlineTokens.refresh_token)).res.status, 200, "alive while signed in");
    const forged = await agent.go("/auth/logout", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "csrf=forged" });
    assert.equal(forged.res.status, 403, "a cross-site form cannot sign the user out");
    const manage = await agent.go("/auth/manage");
    const out = await agent.submit(manage, "#logout");
    assert.equal(out.res.status, 200);
    const afterOnline = await refresh(w, (await refresh(w, onlineTokens.refresh_token)).body.refresh_token ?? onlineTokens.refresh_token);
    assert.equal(afterOnline.body.error, "invalid_grant");
    assert.equal((await refresh(w, offlineTokens.refresh_token)).res.status, 200);
  });

  test("no refresh token without offline_access or online_access", async () => {
    const { code, verifier } = await authorize(w, { scope: "launch/patient openid patient/*.rs" });
    const { body } = await exchange(w, code, verifier);
    assert.equal(body.refresh_token, undefined);
  });
});

describe("confidential clients", () => {
  test("client_secret_basic and client_secret_post authenticate; a wrong or missing secret is invalid_client", async () => {
    const agent = new Agent(w.url);
    let { code, verifier } = await authorize(w, { client_id: CONFIDENTIAL.client_id, agent });
    const ok = await exchange(w, code, verifier, { client_id: undefined }, { headers: { Authorization: basic(CONFIDENTIAL.client_id, SECRET) } });
    assert.equal(ok.res.status, 200, JSON.stringify(ok.body));

    ({ code, verifier } = await authorize(w, { client_id: CONFIDENTIAL.client_id, agent }));
    const wrong = await exchange(w, code, verifier, { client_id: undefined }, { headers: { Authorization: basic(CONFIDENTIAL.client_id, "t".repeat(48)) } });
    assertError(wrong, 401, "invalid_client");
    assert.equal(wrong.res.headers.get("www-authenticate"), 'Basic realm="smart-edge"');
    assertError(await exchange(w, code, verifier, { client_id: CONFIDENTIAL.client_id }), 401, "invalid_client");
    const post = await exchange(w, code, verifier, { client_id: CONFIDENTIAL.client_id, client_secret: SECRET });
    assert.equal(post.res.status, 200);
    // The refresh token of a confidential client is useless without its secret, and an
    // unauthenticated attempt does not rotate it away from the real client.
    assertError(await refresh(w, post.body.refresh_token), 401, "invalid_client");
    const authed = await w.fetch("/auth/token", { ...form({ grant_type: "refresh_token", refresh_token: post.body.refresh_token }), headers: { "Content-Type": "application/x-www-form-urlencoded", Authorization: basic(CONFIDENTIAL.client_id, SECRET) } });
    assert.equal(authed.status, 200);
  });
});

describe("issue 8: what a grant id, a scope or a refresh can no longer do", () => {
  test("a code or refresh token made of the grant id and any secret is invalid_grant and revokes nothing", async () => {
    const { code, verifier } = await authorize(w);
    const tokens = (await exchange(w, code, verifier)).body;
    const gid = code.split(".")[0];
    const forgedCode = await exchange(w, `${gid}.anything`, verifier);
    assertError(forgedCode, 400, "invalid_grant");
    assert.equal(forgedCode.body.error_description, "the code is not valid");
    assertError(await refresh(w, `${gid}.anything`), 400, "invalid_grant");
    assert.equal((await introspect(tokens.access_token)).body.active, true, "the grant is still active");
    assert.equal((await refresh(w, tokens.refresh_token)).res.status, 200, "the real refresh token still works");
    // The real code presented again is the replay that revokes.
    assertError(await exchange(w, code, verifier), 400, "invalid_grant");
    assert.deepEqual((await introspect(tokens.access_token)).body, { active: false });
  });

  test("refresh with a granular scope the server cannot enforce is invalid_scope, and a bad scope does not burn the chain", async () => {
    await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ refresh_grace_secs: 0 }) });
    try {
      const lab = "patient/Observation.rs?category=laboratory";
      const { code, verifier } = await authorize(w, { client_id: LAB.client_id, scope: `launch/patient openid offline_access ${lab}` });
      const first = (await exchange(w, code, verifier, { client_id: LAB.client_id })).body;
      assert.equal(first.scope, `launch/patient openid offline_access ${lab}`);
      assertError(await refresh(w, first.refresh_token, { scope: `${lab}&foo=bar` }), 400, "invalid_scope");
      assertError(await refresh(w, first.refresh_token, { scope: "patient/*.cruds" }), 400, "invalid_scope");
      const next = await refresh(w, first.refresh_token, { scope: lab });
      assert.equal(next.res.status, 200, `the refused scopes rotated nothing: ${JSON.stringify(next.body)}`);
      assert.equal(next.body.scope, lab);
    } finally {
      await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({}) });
    }
  });

  test("introspection describes a token only to its own client or a resource server", async () => {
    const { code, verifier } = await authorize(w);
    const tokens = (await exchange(w, code, verifier)).body;
    const other = basic(CONFIDENTIAL.client_id, SECRET);
    assert.deepEqual((await introspect(tokens.access_token, other)).body, { active: false });
    assert.deepEqual((await introspect(tokens.refresh_token, other)).body, { active: false });
    assert.equal((await introspect(tokens.access_token)).body.active, true, "the resource server sees it");
    const own = await authorize(w, { client_id: CONFIDENTIAL.client_id });
    const ownTokens = (await exchange(w, own.code, own.verifier, { client_id: undefined }, { headers: { Authorization: other } })).body;
    const mine = (await introspect(ownTokens.access_token, other)).body;
    assert.equal(mine.active, true, JSON.stringify(mine));
    assert.equal(mine.client_id, CONFIDENTIAL.client_id);
  });
});

describe("introspection, revocation, userinfo", () => {
  test("introspection tells active tokens with their context, and nothing else about the rest", async () => {
    const { code, verifier } = await authorize(w);
    const tokens = (await exchange(w, code, verifier)).body;
    const { res, body } = await introspect(tokens.access_token);
    assert.equal(res.status, 200);
    assert.equal(body.active, true);
    assert.equal(body.scope, tokens.scope);
    assert.equal(body.client_id, APP.client_id);
    assert.equal(body.sub, PRACTITIONER.username);
    assert.equal(body.iss, w.url);
    assert.equal(body.patient, NED);
    assert.equal(body.need_patient_banner, true);
    assert.equal(body.fhirUser, `${w.url}/fhir/${PRACTITIONER.fhir_user}`, "the ID token's fhirUser, an absolute URL");
    assert.equal(body.token_type, "Bearer");
    assert.ok(body.exp > body.iat);
    const refreshInfo = (await introspect(tokens.refresh_token)).body;
    assert.equal(refreshInfo.active, true);
    assert.equal(refreshInfo.token_type, "refresh_token");
    assert.ok(refreshInfo.exp > body.exp, `the refresh token's own expiry (${refreshInfo.exp}), later than the access token's`);
    assert.equal(refreshInfo.fhirUser, body.fhirUser);
    assert.equal(refreshInfo.sub, body.sub);
    for (const token of ["nonsense", `${"a".repeat(64)}.secret`, tokens.id_token]) {
      assert.deepEqual((await introspect(token)).body, { active: false });
    }
    const anonymous = await introspect(tokens.access_token, null);
    assertError(anonymous, 401, "invalid_client");
    const publicCaller = await w.fetch("/auth/introspect", form({ token: tokens.access_token, client_id: APP.client_id }));
    assert.equal(publicCaller.status, 401, "a public client cannot introspect");
  });

  test("introspection gives fhirUser only with openid and fhirUser granted, as the ID token does", async () => {
    for (const scope of ["launch/patient openid offline_access patient/*.rs", "launch/patient fhirUser offline_access patient/*.rs"]) {
      const { code, verifier } = await authorize(w, { scope });
      const tokens = (await exchange(w, code, verifier)).body;
      assert.equal(tokens.scope, scope);
      if (tokens.id_token) assert.equal(jose.decodeJwt(tokens.id_token).fhirUser, undefined);
      for (const token of [tokens.access_token, tokens.refresh_token]) {
        const { body } = await introspect(token);
        assert.equal(body.active, true);
        assert.equal(body.sub, PRACTITIONER.username);
        assert.equal(body.fhirUser, undefined, `${scope}: ${JSON.stringify(body)}`);
      }
    }
  });

  test("introspection of an EHR-launch token echoes the launch context exactly as the token response gave it", async () => {
    const context = {
      patient: NED,
      encounter: "enc-1",
      fhirContext: [
        { reference: `Patient/${NED}`, role: "launch" },
        { canonical: "http://example.org/Questionnaire/q|1", type: "Questionnaire" },
        {
          identifier: {
            use: "official",
            type: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/v2-0203", code: "MR", display: "Medical record number" }], text: "MRN" },
            system: "urn:example:mrn",
            value: "12345",
            period: { start: "2020-01-01" },
            assigner: { display: "General Hospital" },
          },
          type: "Patient",
        },
      ],
      intent: "reconcile-medications",
      need_patient_banner: false,
      smart_style_url: "https://ehr.example/style.json",
      tenant: "t-1",
    };
    const created = await w.fetch("/auth/ehr/launch", {
      method: "POST",
      headers: adminHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ client_id: APP.client_id, ...context }),
    });
    assert.equal(created.status, 201);
    const { launch } = await created.json();
    // What the launch API would drop (an unknown member, a member of the wrong type) is a 400.
    for (const fhirContext of [[{ identifier: { system: "urn:s", extension: [] } }], [{ identifier: "urn:s|v" }], [{ reference: "Patient/x", note: 1 }]]) {
      const refused = await w.fetch("/auth/ehr/launch", {
        method: "POST",
        headers: adminHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify({ client_id: APP.client_id, patient: NED, fhirContext }),
      });
      const body = await refused.json();
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.equal(body.error, "invalid_request");
      assert.match(body.error_description, /fhirContext item/);
    }
    const { code, verifier } = await authorize(w, { launch, scope: "launch openid fhirUser offline_access patient/*.rs" });
    const tokens = (await exchange(w, code, verifier)).body;
    const members = Object.keys(context);
    assert.deepEqual(Object.fromEntries(members.map((m) => [m, tokens[m]])), context, "the token response carries the launch context");
    const refreshed = (await refresh(w, tokens.refresh_token)).body;
    for (const [issued, token] of [[tokens, tokens.access_token], [refreshed, refreshed.access_token], [refreshed, refreshed.refresh_token]]) {
      const { body } = await introspect(token);
      assert.equal(body.active, true);
      for (const member of members) assert.deepEqual(body[member], issued[member], member);
    }
  });

  test("the Smile CDR compatibility setting answers 404 with every field empty", async () => {
    await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ introspection_style: "smile-cdr" }) });
    try {
      const { res, body } = await introspect("nonsense");
      assert.equal(res.status, 404);
      assert.equal(body.active, false);
      assert.equal(body.scope, "");
    } finally {
      await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({}) });
    }
  });

  test("revoking a refresh token ends the grant: refresh fails, introspection is inactive, userinfo refuses", async () => {
    const { code, verifier } = await authorize(w);
    const tokens = (await exchange(w, code, verifier)).body;
    const userinfo = () => w.fetch("/auth/userinfo", { headers: { Authorization: `Bearer ${tokens.access_token}` } });
    assert.equal((await userinfo()).status, 200);
    const res = await w.fetch("/auth/revoke", form({ token: tokens.refresh_token, token_type_hint: "refresh_token", client_id: APP.client_id }));
    assert.equal(res.status, 200);
    assertError(await refresh(w, tokens.refresh_token), 400, "invalid_grant");
    assert.deepEqual((await introspect(tokens.access_token)).body, { active: false });
    const after = await userinfo();
    assert.equal(after.status, 401);
    assert.match(after.headers.get("www-authenticate"), /error="invalid_token"/);
    const unknown = await w.fetch("/auth/revoke", form({ token: "never-issued", client_id: APP.client_id }));
    assert.equal(unknown.status, 200);
    const missing = await w.fetch("/auth/revoke", form({ client_id: APP.client_id }));
    assert.equal(missing.status, 400);
  });

  test("revoking an access token ends its grant too; another client cannot revoke it", async () => {
    const { code, verifier } = await authorize(w);
    const tokens = (await exchange(w, code, verifier)).body;
    await w.fetch("/auth/revoke", form({ token: tokens.access_token, client_id: ONLINE.client_id }));
    assert.equal((await introspect(tokens.access_token)).body.active, true, "not the client's token: nothing happens");
    await w.fetch("/auth/revoke", form({ token: tokens.access_token, client_id: APP.client_id }));
    assert.deepEqual((await introspect(tokens.access_token)).body, { active: false });
    assertError(await refresh(w, tokens.refresh_token), 400, "invalid_grant");
  });

  test("userinfo: the user's claims with a good token, RFC 6750 errors otherwise", async () => {
    const { code, verifier } = await authorize(w, { scope: "launch/patient openid fhirUser profile patient/*.rs" });
    const tokens = (await exchange(w, code, verifier)).body;
    for (const method of ["GET", "POST"]) {
      const res = await w.fetch("/auth/userinfo", { method, headers: { Authorization: `Bearer ${tokens.access_token}` } });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { sub: PRACTITIONER.username, fhirUser: `${w.url}/fhir/${PRACTITIONER.fhir_user}`, name: PRACTITIONER.display_name });
    }
    const none = await w.fetch("/auth/userinfo");
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="smart-edge"');
    const [h, p] = tokens.access_token.split(".");
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const forged = [
      `${enc({ alg: "none", typ: "at+jwt", kid: "x" })}.${p}.`,
      `${enc({ alg: "HS256", typ: "at+jwt", kid: JSON.parse(Buffer.from(h, "base64url")).kid })}.${p}.c2ln`,
      `${h}.${enc({ ...JSON.parse(Buffer.from(p, "base64url")), exp: 1 })}.${tokens.access_token.split(".")[2]}`,
      tokens.id_token,
      "not.a.jwt",
    ];
    for (const token of forged) {
      const res = await w.fetch("/auth/userinfo", { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(res.status, 401, token.slice(0, 40));
      assert.match(res.headers.get("www-authenticate"), /error="invalid_token"/);
      assert.equal((await res.json()).error, "invalid_token");
    }
    const noOpenid = await authorize(w, { scope: "launch/patient patient/*.rs" });
    const plain = (await exchange(w, noOpenid.code, noOpenid.verifier)).body;
    const denied = await w.fetch("/auth/userinfo", { headers: { Authorization: `Bearer ${plain.access_token}` } });
    assert.equal(denied.status, 403);
    assert.equal((await denied.json()).error, "insufficient_scope");
  });
});

test("discovery lists exactly the grants, methods and endpoints that now work", async () => {
  const { body } = await w.json("/fhir/.well-known/smart-configuration");
  assert.deepEqual(body.grant_types_supported, ["authorization_code", "refresh_token", "client_credentials"]);
  assert.deepEqual(body.token_endpoint_auth_methods_supported, ["client_secret_basic", "client_secret_post", "private_key_jwt"]);
  assert.deepEqual(body.token_endpoint_auth_signing_alg_values_supported, ["RS384", "ES384", "RS256", "ES256"]);
  assert.equal(body.introspection_endpoint, `${w.url}/auth/introspect`);
  assert.equal(body.revocation_endpoint, `${w.url}/auth/revoke`);
  for (const c of ["sso-openid-connect", "client-confidential-symmetric", "client-confidential-asymmetric", "permission-offline", "permission-online"]) assert.ok(body.capabilities.includes(c), c);
  const oidc = (await w.json("/.well-known/openid-configuration")).body;
  assert.equal(oidc.userinfo_endpoint, `${w.url}/auth/userinfo`);
  assert.deepEqual(oidc.grant_types_supported, ["authorization_code", "refresh_token", "client_credentials"]);
  assert.deepEqual(oidc.introspection_endpoint_auth_methods_supported, ["client_secret_basic", "client_secret_post", "private_key_jwt"]);
  assert.deepEqual(oidc.revocation_endpoint_auth_methods_supported, ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]);
});
