// A second, independent SMART App Launch 2.2 server for the browser SDK's end-to-end tests, so
// the SDK is exercised against something other than smart-edge's own quirks. The authorization
// server is node-oidc-provider (the certified Node.js OP) mounted under /oidc; a small FHIR R4
// stub under /fhir validates Bearer tokens by asking the provider. Everything is in memory and
// lives on one 127.0.0.1 port.
//
//   const peer = await startPeerSmart({ clients: [{ client_id: "app", redirect_uris: [...] }] });
//   peer.fhirBase  -> the `iss` / `aud` to give the app; discovery is under it.
//   peer.launch({ patient, encounter }) -> an opaque `launch` value for an EHR launch.
import http from "node:http";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import Provider, { errors } from "oidc-provider";

export const USER_ID = "peer-user";
export const PRACTITIONER_ID = "peer-dr";
export const PATIENT_IDS = ["peer-pat-1", "peer-pat-2"];

// Public clients only: the SDK is a browser app. Callers may override any metadata field.
const CLIENT_DEFAULTS = {
  token_endpoint_auth_method: "none",
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
};
const DEFAULT_CLIENTS = [{ client_id: "peer-app", redirect_uris: ["http://127.0.0.1:8080/callback"] }];

// Scopes node-oidc-provider knows statically (granted as "OIDC scopes"). SMART resource scopes
// are open-ended (patient/Observation.rs?category=laboratory ...), so they are not listed: they
// become resource-server scopes of the FHIR base through the resourceIndicators feature.
const STATIC_SCOPES = ["openid", "fhirUser", "profile", "offline_access", "launch", "launch/patient", "launch/encounter"];
const RESOURCE_SCOPE = /^(patient|user|system)\/\S+$/;
const resourceScopes = (...scopeStrings) =>
  [...new Set(scopeStrings.filter(Boolean).join(" ").split(" "))].filter((s) => RESOURCE_SCOPE.test(s));

/**
 * @param {{port?: number, clients?: object[], accessTokenTTL?: number}} options
 *   clients: client metadata (client_id, redirect_uris, ...) merged over public-client defaults.
 *   accessTokenTTL: seconds; lower it to test expiry.
 */
export async function startPeerSmart({ port = 0, clients = DEFAULT_CLIENTS, accessTokenTTL = 3600 } = {}) {
  // The issuer must be known before the provider exists, and port 0 is only resolved by listen().
  const server = http.createServer((req, res) => handle(req, res).catch((err) => fail(res, err)));
  await new Promise((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const issuer = `${url}/oidc`;
  const fhirBase = `${url}/fhir`;
  const styleUrl = `${url}/style.json`;
  const fhir = fhirData(fhirBase);

  const launches = new Map(); // launch value -> { patient, encounter }
  const contexts = new Map(); // grantId -> launch context for the token response
  let refreshes = 0;
  let revocations = 0;

  const signingKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });

  const provider = new Provider(issuer, {
    jwks: { keys: [{ ...signingKey, alg: "RS256", use: "sig", kid: "peer-rs256" }] },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    clients: clients.map((c) => ({ ...CLIENT_DEFAULTS, ...c })),
    scopes: STATIC_SCOPES,
    claims: { openid: ["sub"], fhirUser: ["fhirUser"], profile: ["name", "given_name", "family_name"] },
    // By default scope-derived claims go to userinfo only whenever an access token could be used
    // there; SMART apps read fhirUser from the ID token, so always put them in it.
    conformIdTokenClaims: false,
    findAccount: (ctx, sub) =>
      sub === USER_ID
        ? {
            accountId: sub,
            claims: () => ({
              sub,
              fhirUser: `${fhirBase}/Practitioner/${PRACTITIONER_ID}`,
              name: "Dr. Pia Peer",
              given_name: "Pia",
              family_name: "Peer",
            }),
          }
        : undefined,
    // SMART's `aud` (the FHIR base) and `launch` are not OAuth parameters the provider knows;
    // declaring them keeps them in the request (and in interaction details) and validates them.
    extraParams: {
      aud(ctx, value) {
        if (value?.replace(/\/$/, "") !== fhirBase) {
          throw new errors.InvalidRequest(`aud must be the FHIR base URL ${fhirBase}`);
        }
      },
      launch(ctx, value) {
        if (value !== undefined && !launches.has(value)) throw new errors.InvalidRequest("unknown launch value");
      },
    },
    // Always start from a fresh grant (never the one remembered in the browser session) so each
    // authorization goes through the interaction, where its own launch context is bound to it.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId;
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    },
    interactions: { url: (ctx, interaction) => `/oidc/interaction/${interaction.uid}` },
    // Browser apps call the token/revocation endpoints cross-origin: allow the origins of the
    // client's own redirect URIs, like real EHRs do (discovery and JWKS are always open).
    clientBasedCORS: (ctx, origin, client) => client.redirectUris.some((u) => URL.parse(u)?.origin === origin),
    // Tokens outlive the browser session: by default, tokens without offline_access die when the
    // same browser authorizes the client again (one grant per client per session), which would
    // make a second launch in a test's browser silently kill the first launch's tokens.
    expiresWithSession: async () => false,
    pkce: { required: () => true },
    // A new refresh token on every use, for public clients too (the old one stops working, and
    // reusing it revokes the grant). Refresh tokens need offline_access and the refresh_token
    // grant type in the client's metadata (CLIENT_DEFAULTS); spelled out, as in the default.
    rotateRefreshToken: true,
    issueRefreshToken: async (ctx, client, code) =>
      client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access"),
    ttl: {
      AccessToken: accessTokenTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      // The FHIR server is the only resource server; every request targets it even without a
      // `resource` parameter, and its scopes are whatever SMART resource scopes were asked for.
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => fhirBase,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          if (indicator.replace(/\/$/, "") !== fhirBase) throw new errors.InvalidTarget();
          const { params, entities } = ctx.oidc;
          // Authorization: the request's scope. Token endpoint: the code's or refresh token's.
          const scope = resourceScopes(params.scope, entities.AuthorizationCode?.scope, entities.RefreshToken?.scope);
          return { scope: scope.join(" "), audience: fhirBase, accessTokenFormat: "opaque", accessTokenTTL };
        },
      },
    },
  });
  provider.on("server_error", (ctx, err) => console.error("peer-smart server_error", err));

  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (route === "revocation" && ctx.status === 200) revocations++;
    if (route === "token" && ctx.status === 200 && ctx.body?.access_token) {
      const { entities, params } = ctx.oidc;
      if (params.grant_type === "refresh_token") refreshes++;
      // The access token only carries the FHIR scopes; report the whole granted scope.
      const source = entities.AuthorizationCode ?? entities.RefreshToken;
      const asked = new Set((params.scope ?? source?.scope ?? "").split(" "));
      const oidcScope = entities.Grant?.getOIDCScopeFiltered(asked) ?? "";
      ctx.body.scope = [oidcScope, ctx.body.scope].filter(Boolean).join(" ");
      Object.assign(ctx.body, contexts.get(entities.AccessToken?.grantId));
    }
  });
  const oidc = provider.callback();

  // Login and consent without a page: the fixed user signs in and grants exactly what was asked.
  async function interaction(req, res) {
    const { params, prompt } = await provider.interactionDetails(req, res);
    const scopes = new Set(String(params.scope ?? "").split(" "));
    const grant = new provider.Grant({ accountId: USER_ID, clientId: params.client_id });
    grant.addOIDCScope(STATIC_SCOPES.filter((s) => scopes.has(s)).join(" "));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    grant.addResourceScope(fhirBase, resourceScopes(params.scope).join(" "));
    const grantId = await grant.save();

    // EHR launch (launch scope + launch value) wins over standalone (launch/patient: first patient).
    const launched = scopes.has("launch") && launches.get(params.launch);
    const context = launched
      ? { ...launched }
      : {
          patient: scopes.has("launch/patient") ? PATIENT_IDS[0] : undefined,
          encounter: scopes.has("launch/encounter") ? fhir.encounterOf(PATIENT_IDS[0]) : undefined,
        };
    if (context.patient || context.encounter) {
      Object.keys(context).forEach((k) => context[k] === undefined && delete context[k]);
      contexts.set(grantId, { ...context, need_patient_banner: true, smart_style_url: styleUrl });
    }
    const result = { login: { accountId: USER_ID }, consent: { grantId } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }

  async function handle(req, res) {
    const path = req.url.split("?")[0];
    if (path.startsWith("/oidc/interaction/")) return interaction(req, res);
    if (path === "/oidc" || path.startsWith("/oidc/")) {
      if (path === "/oidc/auth" && req.method === "GET") req.url = askConsentForOfflineAccess(req.url);
      // Mount the way Express does, so the provider builds /oidc-prefixed URLs and cookie paths
      // (it finds the mount point by comparing req.originalUrl with the URL it is given).
      req.originalUrl = req.url;
      req.url = req.url.slice("/oidc".length) || "/";
      return oidc(req, res);
    }
    if (path === "/style.json") {
      return send(res, 200, { color_background: "#edeae3", color_highlight: "#69b5ce", dim_border_radius: "6px" });
    }
    if (path === "/fhir" || path.startsWith("/fhir/")) return fhirRoute(req, res, req.url.slice("/fhir".length));
    return send(res, 404, { error: "not_found" });
  }

  async function fhirRoute(req, res, pathAndQuery) {
    const { pathname: path, searchParams } = new URL(pathAndQuery, "http://x");
    if (req.method === "OPTIONS") {
      res.writeHead(204, {
        ...CORS,
        "Access-Control-Allow-Methods": "GET, OPTIONS",
        "Access-Control-Allow-Headers": req.headers["access-control-request-headers"] ?? "Authorization, Accept",
        "Access-Control-Max-Age": "600",
      });
      return res.end();
    }
    if (path === "/.well-known/smart-configuration") return send(res, 200, smartConfiguration());
    if (path === "/metadata") return send(res, 200, capabilityStatement(), FHIR_JSON);

    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    // find() returns nothing for unknown and revoked (deleted) tokens; it lets expired ones
    // through for clockTolerance (15 s), so expiry is checked here, strictly.
    const token = bearer && (await provider.AccessToken.find(bearer));
    if (!token || token.isExpired || token.aud !== fhirBase) {
      const error = bearer ? ', error="invalid_token"' : "";
      res.setHeader("WWW-Authenticate", `Bearer realm="${fhirBase}"${error}`);
      return send(res, 401, outcome("login", "a valid Bearer access token is required"), FHIR_JSON);
    }

    const [type, id, extra] = path.split("/").filter(Boolean);
    if (req.method !== "GET") return send(res, 405, outcome("not-supported", "read-only stub"), FHIR_JSON);
    if (type === "Observation" && !id) return send(res, 200, fhir.searchObservations(searchParams), FHIR_JSON);
    const resource = id && !extra && fhir.read(type, id);
    if (!resource) return send(res, 404, outcome("not-found", `${path} not found`), FHIR_JSON);
    return send(res, 200, resource, FHIR_JSON);
  }

  function smartConfiguration() {
    return {
      issuer,
      jwks_uri: provider.urlFor("jwks"),
      authorization_endpoint: provider.urlFor("authorization"),
      token_endpoint: provider.urlFor("token"),
      revocation_endpoint: provider.urlFor("revocation"),
      introspection_endpoint: provider.urlFor("introspection"),
      userinfo_endpoint: provider.urlFor("userinfo"),
      token_endpoint_auth_methods_supported: ["none"],
      grant_types_supported: ["authorization_code", "refresh_token"],
      response_types_supported: ["code"],
      code_challenge_methods_supported: ["S256"],
      scopes_supported: [...STATIC_SCOPES, "patient/*.rs", "patient/*.read", "user/*.rs", "user/*.read"],
      capabilities: [
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "context-ehr-patient",
        "context-ehr-encounter",
        "context-standalone-patient",
        "context-standalone-encounter",
        "context-passthrough-banner",
        "context-passthrough-style",
        "permission-offline",
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2",
        "sso-openid-connect",
      ],
    };
  }

  function capabilityStatement() {
    const uri = (name, route) => ({ url: name, valueUri: provider.urlFor(route) });
    return {
      resourceType: "CapabilityStatement",
      status: "active",
      date: "2024-01-01",
      kind: "instance",
      fhirVersion: "4.0.1",
      format: ["json"],
      implementation: { description: "peer-smart test fixture", url: fhirBase },
      rest: [
        {
          mode: "server",
          security: {
            service: [
              { coding: [{ system: "http://terminology.hl7.org/CodeSystem/restful-security-service", code: "SMART-on-FHIR" }] },
            ],
            extension: [
              {
                url: "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                extension: [
                  uri("authorize", "authorization"),
                  uri("token", "token"),
                  uri("revoke", "revocation"),
                  uri("introspect", "introspection"),
                ],
              },
            ],
          },
          resource: ["Patient", "Practitioner", "Encounter", "Observation"].map((type) => ({
            type,
            interaction: [{ code: "read" }, ...(type === "Observation" ? [{ code: "search-type" }] : [])],
          })),
        },
      ],
    };
  }

  return {
    url,
    fhirBase,
    issuer,
    provider,
    launch({ patient = PATIENT_IDS[0], encounter } = {}) {
      const value = randomBytes(16).toString("base64url");
      launches.set(value, encounter ? { patient, encounter } : { patient });
      return value;
    },
    refreshCount: () => refreshes,
    revokedCount: () => revocations,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const CORS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Expose-Headers": "WWW-Authenticate, Location, Content-Location",
};
const FHIR_JSON = "application/fhir+json";

// OpenID Connect drops offline_access unless prompt=consent is asked; SMART apps never send it.
// Consent is automatic here, so asking for it on the app's behalf changes nothing else.
function askConsentForOfflineAccess(requestUrl) {
  const u = new URL(requestUrl, "http://x");
  const prompt = u.searchParams.get("prompt");
  const offline = (u.searchParams.get("scope") ?? "").split(" ").includes("offline_access");
  if (!offline || prompt === "none" || prompt?.split(" ").includes("consent")) return requestUrl;
  u.searchParams.set("prompt", prompt ? `${prompt} consent` : "consent");
  return u.pathname + u.search;
}

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { ...CORS, "Content-Type": type, "Cache-Control": "no-store" });
  res.end(JSON.stringify(body));
}

function fail(res, err) {
  console.error("peer-smart error", err);
  if (!res.headersSent) send(res, 500, { error: "server_error", error_description: String(err?.message ?? err) });
  else res.end();
}

const outcome = (code, diagnostics) => ({
  resourceType: "OperationOutcome",
  issue: [{ severity: "error", code, diagnostics }],
});

// The stub's records: two patients, a practitioner, an encounter each, and 25 laboratory
// observations for the first patient (five analytes, five draws), enough for three pages of 10.
function fhirData(fhirBase) {
  const patients = [
    { id: PATIENT_IDS[0], family: "Okafor", given: ["Amara", "Ngozi"], gender: "female", birthDate: "1984-03-12" },
    { id: PATIENT_IDS[1], family: "Lindqvist", given: ["Erik"], gender: "male", birthDate: "1957-11-02" },
  ].map(({ id, family, given, gender, birthDate }) => ({
    resourceType: "Patient",
    id,
    active: true,
    name: [{ use: "official", family, given }],
    gender,
    birthDate,
  }));
  const practitioner = {
    resourceType: "Practitioner",
    id: PRACTITIONER_ID,
    name: [{ family: "Peer", given: ["Pia"], prefix: ["Dr."] }],
  };
  const encounters = PATIENT_IDS.map((patient, i) => ({
    resourceType: "Encounter",
    id: `peer-enc-${i + 1}`,
    status: "in-progress",
    class: { system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: "AMB", display: "ambulatory" },
    subject: { reference: `Patient/${patient}` },
    period: { start: "2024-05-0" + (i + 1) + "T09:00:00Z" },
  }));
  const analytes = [
    ["2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 92],
    ["2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.1, 0.9],
    ["2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135, 145, 140],
    ["2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 4.2],
    ["718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12, 15.5, 13.4],
  ];
  const observations = [];
  for (let draw = 0; draw < 5; draw++) {
    for (const [code, display, unit, low, high, base] of analytes) {
      const value = Math.round(base * (1 + (draw - 2) * 0.04) * 100) / 100;
      observations.push({
        resourceType: "Observation",
        id: `peer-obs-${observations.length + 1}`,
        status: "final",
        category: [
          {
            coding: [
              { system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "laboratory", display: "Laboratory" },
            ],
          },
        ],
        code: { coding: [{ system: "http://loinc.org", code, display }], text: display },
        subject: { reference: `Patient/${PATIENT_IDS[0]}` },
        effectiveDateTime: `2024-0${draw + 1}-15T08:30:00Z`,
        valueQuantity: { value, unit, system: "http://unitsofmeasure.org", code: unit },
        referenceRange: [
          {
            low: { value: low, unit, system: "http://unitsofmeasure.org", code: unit },
            high: { value: high, unit, system: "http://unitsofmeasure.org", code: unit },
          },
        ],
      });
    }
  }
  // Newest first, the order EHRs usually answer in.
  observations.reverse();
  const byType = {
    Patient: patients,
    Practitioner: [practitioner],
    Encounter: encounters,
    Observation: observations,
  };

  return {
    read: (type, id) => byType[type]?.find((r) => r.id === id),
    encounterOf: (patient) => encounters.find((e) => e.subject.reference === `Patient/${patient}`)?.id,
    // Supports patient (id or Patient/id), category, _count (default 10) and _offset paging.
    searchObservations(query) {
      const patient = query.get("patient")?.replace(/^Patient\//, "");
      const category = query.get("category");
      const count = Math.min(Math.max(Number.parseInt(query.get("_count") ?? "10", 10) || 10, 1), 100);
      const offset = Math.max(Number.parseInt(query.get("_offset") ?? "0", 10) || 0, 0);
      const matches = observations.filter(
        (o) =>
          (!patient || o.subject.reference === `Patient/${patient}`) &&
          (!category || o.category.some((c) => c.coding.some((cc) => cc.code === category))),
      );
      const page = (at) => {
        const params = new URLSearchParams();
        if (patient) params.set("patient", patient);
        if (category) params.set("category", category);
        params.set("_count", String(count));
        params.set("_offset", String(at));
        return `${fhirBase}/Observation?${params}`;
      };
      const link = [{ relation: "self", url: page(offset) }];
      if (offset + count < matches.length) link.push({ relation: "next", url: page(offset + count) });
      if (offset > 0) link.push({ relation: "previous", url: page(Math.max(offset - count, 0)) });
      return {
        resourceType: "Bundle",
        id: createHash("sha256").update(page(offset)).digest("hex").slice(0, 16),
        type: "searchset",
        total: matches.length,
        link,
        entry: matches.slice(offset, offset + count).map((resource) => ({
          fullUrl: `${fhirBase}/Observation/${resource.id}`,
          resource,
          search: { mode: "match" },
        })),
      };
    },
  };
}
