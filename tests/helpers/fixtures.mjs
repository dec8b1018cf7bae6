// The clients, users and patients the authorization tests run against.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, adminHeaders } from "./worker.mjs";

export const REDIRECT = "https://app.example/callback";
export const PASSWORD = "test-password-1";
export const PRACTITIONER = { username: "dr.test", display_name: "Dr. Test", fhir_user: "Practitioner/f4bf5265-8d8e-4055-a4e5-b34853f1099f", password: PASSWORD };
export const NED = "616eaeb2-a67a-44e5-a7e6-9bbd85e47c5c";
export const BUSTER = "e4531916-b162-4f4b-90c2-ce37e132b8d4";
export const PATIENT_USER = { username: "ned", display_name: "Ned Hintz", fhir_user: `Patient/${NED}`, password: PASSWORD };

export const APP = {
  client_id: "test-app",
  client_name: "Test App",
  client_type: "public",
  redirect_uris: [REDIRECT],
  launch_uri: "https://app.example/launch",
  scope: "launch launch/patient launch/encounter openid fhirUser profile offline_access patient/*.rs user/*.rs",
  consent: "ask",
};

async function post(worker, path, body) {
  const res = await worker.fetch(path, { method: "POST", headers: adminHeaders({ "Content-Type": "application/json" }), body: typeof body === "string" ? body : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function seed(worker, { clients = [APP], users = [PRACTITIONER, PATIENT_USER] } = {}) {
  for (const client of clients) await post(worker, "/admin/clients", client);
  for (const user of users) await post(worker, "/admin/users", user);
  const dir = join(ROOT, "tests", "fixtures", "synthea");
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
    await post(worker, "/admin/fhir/bundle", readFileSync(join(dir, file), "utf8"));
  }
}

export function authorizeUrl(worker, params = {}) {
  const query = new URLSearchParams({
    response_type: "code",
    client_id: APP.client_id,
    redirect_uri: REDIRECT,
    scope: "launch/patient openid fhirUser patient/*.rs",
    state: "state-123",
    aud: `${worker.url}/fhir`,
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method: "S256",
    ...params,
  });
  for (const [k, v] of Object.entries(params)) if (v === undefined) query.delete(k);
  return `/auth/authorize?${query}`;
}

/** The grant record behind an authorization code (internal state, read for assertions). */
export async function grantOf(worker, code) {
  const id = code.split(".")[0];
  const ns = await worker.mf.getDurableObjectNamespace("GRANTS");
  const res = await ns.get(ns.idFromString(id)).fetch("https://do/peek");
  return res.json();
}
