// smart-edge SDK: a SMART App Launch 2.2 client for pure HTML/JS apps, compiled from Rust to
// WebAssembly. This module is the public API (fhirclient.js's habits: authorize / ready / init,
// a Client with patient, user, encounter and request); the protocol work happens in the wasm,
// which keeps no state of its own: the Client holds its serialisable `state`.
import initWasm, { sdk } from "./smart_edge_sdk.js";

await initWasm();

/** Every failure: `code` is the OAuth error, the FHIR issue code, or one of the SDK's own. */
export class SmartError extends Error {
  constructor({ code, message, status, outcome }) {
    super(message);
    this.name = "SmartError";
    this.code = code;
    this.status = status ?? null;
    this.outcome = outcome ?? null;
  }
}

function toSmartError(e) {
  if (e instanceof SmartError) return e;
  if (typeof e === "string") {
    try {
      return new SmartError(JSON.parse(e));
    } catch {
      return new SmartError({ code: "internal", message: e });
    }
  }
  return new SmartError({ code: "internal", message: String(e?.message ?? e) });
}

/** Runs an operation of the wasm; its JSON answer parsed, its failure as a SmartError. */
async function call(operation, args = {}) {
  try {
    return JSON.parse(await sdk(operation, JSON.stringify(args)));
  } catch (e) {
    throw toSmartError(e);
  }
}

/** The authorize options, as the wasm takes them (strings and a flag). */
function options(o = {}) {
  if (!o.clientId) throw new SmartError({ code: "invalid_options", message: "clientId is required" });
  const text = (v) => (v == null ? undefined : String(v));
  return {
    clientId: String(o.clientId), scope: text(o.scope), redirectUri: text(o.redirectUri), iss: text(o.iss),
    fhirServiceUrl: text(o.fhirServiceUrl), launch: text(o.launch), noRedirect: Boolean(o.noRedirect), target: text(o.target),
  };
}

/** `Type/id` of a reference or of an absolute `fhirUser` URL. */
function typeAndId(reference) {
  const parts = String(reference ?? "").replace(/\/+$/, "").split("/");
  return parts.length >= 2 ? [parts[parts.length - 2], parts[parts.length - 1]] : [null, null];
}

export class Client {
  /** @param {object} state a session from `ready()` (or a saved `client.state`) */
  constructor(state) {
    this.state = state;
    const self = this;
    const context = () => this.state.tokenResponse ?? {};
    const none = (what) => Promise.reject(new SmartError({ code: "no_context", message: `no ${what} in the launch context` }));
    this.patient = {
      get id() { return self.state.patient ?? null; },
      read: () => (this.patient.id ? this.request(`Patient/${encodeURIComponent(this.patient.id)}`) : none("patient")),
      request: (urlOrRequest, options = {}) => this.request(urlOrRequest, { ...options, inPatient: true }),
    };
    this.encounter = {
      get id() { return self.state.encounter ?? null; },
      read: () => (this.encounter.id ? this.request(`Encounter/${encodeURIComponent(this.encounter.id)}`) : none("encounter")),
    };
    const fhirUser = () => this.state.fhirUser ?? null;
    this.user = {
      get fhirUser() { return fhirUser(); },
      get id() { return typeAndId(fhirUser())[1]; },
      get resourceType() { return typeAndId(fhirUser())[0]; },
      read: () => (fhirUser() ? this.request(fhirUser()) : none("user")),
    };
    this._context = context;
  }

  /** Whether the app should draw its own patient banner (SMART: unless the EHR says false). */
  get needPatientBanner() { return this._context().need_patient_banner !== false; }
  get smartStyleUrl() { return this._context().smart_style_url ?? null; }
  /** The verified ID token's claims (null without `openid`). */
  getIdToken() { return this.state.idTokenClaims ?? null; }
  getFhirContext() { return this._context().fhirContext ?? []; }

  /**
   * A FHIR request: a path relative to the FHIR base, an absolute URL, or
   * `{ url, method, body, headers }`. `pageLimit` pages are fetched through `next` links
   * (0 = all); `flat` answers the resources of every page as one array.
   */
  async request(urlOrRequest, { pageLimit = 1, flat = false, inPatient = false } = {}) {
    const r = typeof urlOrRequest === "string" || urlOrRequest instanceof URL ? { url: String(urlOrRequest) } : urlOrRequest;
    const body = r.body === undefined ? undefined : typeof r.body === "string" ? r.body : JSON.stringify(r.body);
    const headers = Object.entries(r.headers ?? {}).map(([name, value]) => ({ name, value: String(value) }));
    const out = await call("request", {
      state: this.state, url: String(r.url), method: r.method == null ? undefined : String(r.method), body, headers,
      pageLimit: Math.max(0, Number(pageLimit) | 0), flat: Boolean(flat), inPatient: Boolean(inPatient),
    });
    this.state = out.session;
    return out.result;
  }

  /** Refreshes the access token now (it also happens on its own before expiry and after a 401). */
  async refresh() {
    this.state = await call("refresh", { state: this.state });
    return this.state;
  }

  /** Revokes the tokens where the server allows it, then forgets the session. */
  async logout() {
    await call("logout", { state: this.state });
  }
}

/** Starts an authorization: EHR launch (`iss` + `launch` from the page) or standalone (`fhirServiceUrl`). */
export async function authorize(o) {
  return call("authorize", options(o));
}

/** On the redirect page: completes the authorization; on a reload: restores the session. */
export async function ready() {
  return new Client(await call("ready"));
}

/** `ready()` when the page is a redirect or a session exists, else `authorize(options)`. */
export async function init(o) {
  const state = await call("init", options(o));
  return state ? new Client(state) : new Promise(() => {});
}

/** The server's OAuth endpoints and SMART capabilities (its smart-configuration). */
export async function discover(fhirBase) {
  return call("discover", { fhirBase: String(fhirBase) });
}

export const oauth2 = { authorize, ready, init };
export default { oauth2, authorize, ready, init, discover, Client, SmartError };
