// Shortcuts through the authorization flow for the token tests.
import { Agent, pkce } from "./agent.mjs";
import { authorizeUrl, PRACTITIONER, NED, REDIRECT } from "./fixtures.mjs";

/**
 * Runs an authorization with `scope` to the code (an EHR launch with `launch`, the value
 * `POST /auth/ehr/launch` gave). Returns { code, verifier, agent }.
 * The agent keeps the session, so further flows can reuse it.
 */
export async function authorize(w, { scope = "launch/patient openid fhirUser offline_access patient/*.rs", client_id, agent = new Agent(w.url), user = PRACTITIONER, nonce = "nonce-1", patient = NED, launch } = {}) {
  const { verifier, challenge } = await pkce();
  let page = await agent.go(authorizeUrl(w, { scope, code_challenge: challenge, nonce, ...(client_id ? { client_id } : {}), ...(launch ? { launch } : {}) }));
  if (page.doc?.querySelector("#login-submit")) {
    page = await agent.submit(page, "#login-submit", { fill: { username: user.username, password: user.password } });
  }
  if (page.doc?.querySelector(".patient-pick")) page = await agent.submit(page, `.patient-pick[value='${patient}']`);
  if (page.doc?.querySelector("#approve")) page = await agent.submit(page, "#approve");
  if (!page.redirect) throw new Error(`no redirect: ${page.res.status} ${page.html?.slice(0, 400)}`);
  const code = page.redirect.searchParams.get("code");
  if (!code) throw new Error(`no code: ${page.redirect}`);
  return { code, verifier, agent };
}

export function form(params) {
  return { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params).toString() };
}

export async function exchange(w, code, verifier, extra = {}, init = {}) {
  const params = { grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: REDIRECT, client_id: "test-app", ...extra };
  for (const [k, v] of Object.entries(params)) if (v === undefined) delete params[k];
  const request = form(params);
  request.headers = { ...request.headers, ...(init.headers ?? {}) };
  const res = await w.fetch("/auth/token", request);
  return { res, body: await res.json() };
}

export async function refresh(w, refreshToken, extra = {}) {
  const res = await w.fetch("/auth/token", form({ grant_type: "refresh_token", refresh_token: refreshToken, ...extra }));
  return { res, body: await res.json() };
}
