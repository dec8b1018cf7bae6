// An independent OpenID Connect client library (openid-client, on oauth4webapi) against the
// Worker on workerd: discovery → authorization code + PKCE → ID token validation → userinfo →
// refresh → introspection → revocation. Only the user's part (login, consent) is done by the
// scripted browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as oidc from "openid-client";
import { startWorker } from "./helpers/worker.mjs";
import { Agent } from "./helpers/agent.mjs";
import { seed, APP, REDIRECT, PRACTITIONER, NED } from "./helpers/fixtures.mjs";

const SECRET = "q".repeat(48);
const CLIENT = { ...APP, client_id: "oidc-rp", client_type: "confidential-symmetric", client_secrets: [SECRET], consent: "ask" };
let w;
before(async () => {
  w = await startWorker();
  await seed(w, { clients: [CLIENT] });
});
after(() => w.dispose());

test("openid-client completes the whole lifecycle", async () => {
  const config = await oidc.discovery(new URL(w.url), CLIENT.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(SECRET), {
    execute: [oidc.allowInsecureRequests], // the test server is plain http on loopback
  });
  assert.equal(config.serverMetadata().issuer, w.url);

  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: "openid fhirUser profile offline_access launch/patient patient/*.rs",
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
    nonce,
    aud: `${w.url}/fhir`,
  });

  const agent = new Agent(w.url);
  let page = await agent.go(url.pathname + url.search);
  page = await agent.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: PRACTITIONER.password } });
  page = await agent.submit(page, `.patient-pick[value='${NED}']`);
  page = await agent.submit(page, "#approve");
  assert.ok(page.redirect, "redirected to the client");

  // Validates state, iss (RFC 9207), the code exchange with PKCE and the ID token
  // (signature against the JWKS, iss, aud, exp, iat, nonce).
  const tokens = await oidc.authorizationCodeGrant(config, page.redirect, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
  const claims = tokens.claims();
  assert.equal(claims.sub, PRACTITIONER.username);
  assert.equal(claims.fhirUser, `${w.url}/fhir/${PRACTITIONER.fhir_user}`);
  assert.equal(tokens.patient, NED);

  const userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
  assert.equal(userinfo.name, PRACTITIONER.display_name);

  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token);

  const active = await oidc.tokenIntrospection(config, refreshed.access_token);
  assert.equal(active.active, true);
  assert.equal(active.client_id, CLIENT.client_id);
  // SMART 2.2 token introspection: the ID token's iss and sub (SHALL) and fhirUser (SHOULD),
  // the same values, and the launch context the token response gave.
  for (const described of [active, await oidc.tokenIntrospection(config, refreshed.refresh_token)]) {
    assert.equal(described.active, true);
    assert.equal(described.iss, claims.iss);
    assert.equal(described.sub, claims.sub);
    assert.equal(described.fhirUser, claims.fhirUser);
    assert.equal(described.patient, tokens.patient);
  }

  await oidc.tokenRevocation(config, refreshed.refresh_token);
  const inactive = await oidc.tokenIntrospection(config, refreshed.access_token);
  assert.deepEqual(inactive, { active: false });
  await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token), (e) => e.error === "invalid_grant");
});

test("openid-client sends max_age and checks auth_time itself", async () => {
  const config = await oidc.discovery(new URL(w.url), CLIENT.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(SECRET), {
    execute: [oidc.allowInsecureRequests],
  });
  const agent = new Agent(w.url);
  const run = async (maxAge, { login }) => {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: "openid fhirUser profile patient/*.rs",
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
      nonce,
      max_age: String(maxAge),
      aud: `${w.url}/fhir`,
    });
    let page = await agent.go(url.pathname + url.search);
    assert.equal(Boolean(page.doc?.querySelector("#login-submit")), login, login ? "max_age asks for a new login" : "the session is recent enough");
    if (login) page = await agent.submit(page, "#login-submit", { fill: { username: PRACTITIONER.username, password: PRACTITIONER.password } });
    page = await agent.submit(page, "#approve");
    // maxAge: openid-client requires auth_time and checks it is within max_age (plus its skew).
    const tokens = await oidc.authorizationCodeGrant(config, page.redirect, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, maxAge });
    return tokens.claims();
  };
  const first = await run(0, { login: true });
  assert.equal(typeof first.auth_time, "number");
  // claims_supported (OpenID Connect Discovery §3) lists every claim the ID token carries.
  const supported = config.serverMetadata().claims_supported;
  for (const claim of Object.keys(first)) assert.ok(supported.includes(claim), `${claim} is in claims_supported`);
  const again = await run(600, { login: false });
  assert.equal(again.auth_time, first.auth_time, "the session's sign-in, not the token's time");
  const fresh = await run(0, { login: true });
  assert.ok(fresh.auth_time >= first.auth_time);
});
