// Discovery documents, FHIR metadata, CORS and the error answers of unknown routes, on the
// built Worker under workerd.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker } from "./helpers/worker.mjs";

let w;
before(async () => { w = await startWorker(); });
after(() => w.dispose());

test("smart-configuration has every required field, absolute URLs, S256 only", async () => {
  const { res, body } = await w.json("/fhir/.well-known/smart-configuration", { headers: { Accept: "text/html" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(body.issuer, w.url);
  assert.equal(body.jwks_uri, `${w.url}/.well-known/jwks.json`);
  assert.equal(body.token_endpoint, `${w.url}/auth/token`);
  assert.deepEqual(body.code_challenge_methods_supported, ["S256"]);
  assert.ok(Array.isArray(body.capabilities));
  assert.ok(Array.isArray(body.grant_types_supported));
  assert.equal(body.authorization_endpoint, `${w.url}/auth/authorize`);
  // Only what works is advertised: nothing that has not landed yet.
  assert.deepEqual(body.grant_types_supported, ["authorization_code", "refresh_token", "client_credentials"]);
  assert.equal(body.management_endpoint, `${w.url}/auth/manage`);
  for (const [key, value] of Object.entries(body)) {
    if (key.endsWith("_endpoint") || key.endsWith("_uri") || key === "issuer") {
      assert.ok(new URL(value).href.startsWith(w.url), `${key} is absolute`);
    }
  }
});

test("openid-configuration's issuer is exactly the URL it was fetched under", async () => {
  const { res, body } = await w.json("/.well-known/openid-configuration");
  assert.equal(res.status, 200);
  assert.equal(`${body.issuer}/.well-known/openid-configuration`, `${w.url}/.well-known/openid-configuration`);
  assert.equal(body.jwks_uri, `${w.url}/.well-known/jwks.json`);
  assert.equal(body.token_endpoint, `${w.url}/auth/token`);
  assert.deepEqual(body.subject_types_supported, ["public"]);
  assert.deepEqual(body.id_token_signing_alg_values_supported, ["RS256"]);
  assert.deepEqual(body.code_challenge_methods_supported, ["S256"]);
  assert.ok(Array.isArray(body.response_types_supported));
});

test("PUBLIC_BASE_URL fixes the issuer whatever the request's host", async () => {
  const other = await startWorker({ bindings: { PUBLIC_BASE_URL: "https://ehr.example.org", FHIR_BASE_PATH: "/r4", DEV_ROUTES: "false" } });
  try {
    const { body } = await other.json("/r4/.well-known/smart-configuration");
    assert.equal(body.issuer, "https://ehr.example.org");
    assert.equal(body.token_endpoint, "https://ehr.example.org/auth/token");
    assert.equal((await other.fetch("/fhir/metadata")).status, 404);
  } finally {
    await other.dispose();
  }
});

test("metadata is an R4 CapabilityStatement with the SMART service and oauth-uris", async () => {
  const { res, body } = await w.json("/fhir/metadata");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/fhir\+json/);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(body.resourceType, "CapabilityStatement");
  assert.equal(body.status, "active");
  assert.equal(body.kind, "instance");
  assert.equal(body.fhirVersion, "4.0.1");
  assert.ok(!Number.isNaN(Date.parse(body.date)));
  assert.deepEqual(body.format, ["json"]);
  const rest = body.rest[0];
  assert.equal(rest.mode, "server");
  const service = rest.security.service[0].coding[0];
  assert.deepEqual(service, { system: "http://terminology.hl7.org/CodeSystem/restful-security-service", code: "SMART-on-FHIR" });
  const oauth = rest.security.extension.find((e) => e.url === "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
  assert.deepEqual(oauth.extension, [
    { url: "token", valueUri: `${w.url}/auth/token` },
    { url: "authorize", valueUri: `${w.url}/auth/authorize` },
    { url: "introspect", valueUri: `${w.url}/auth/introspect` },
    { url: "revoke", valueUri: `${w.url}/auth/revoke` },
    { url: "manage", valueUri: `${w.url}/auth/manage` },
  ]);
  assert.equal(rest.resource.length, 145, "every R4 resource type with a RESTful endpoint");
  const observation = rest.resource.find((r) => r.type === "Observation");
  assert.deepEqual(observation.searchParam.find((p) => p.name === "code"), {
    name: "code",
    definition: "http://hl7.org/fhir/SearchParameter/clinical-code",
    type: "token",
  });
  assert.ok(!observation.searchParam.some((p) => p.name === "code-value-quantity"), "composite parameters are not served, so not listed");
});

test("CORS preflight on public routes, none on admin routes", async () => {
  const pre = await w.fetch("/fhir/metadata", { method: "OPTIONS", headers: { Origin: "https://app.example", "Access-Control-Request-Method": "GET" } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  assert.match(pre.headers.get("access-control-allow-methods"), /GET/);
  assert.match(pre.headers.get("access-control-allow-headers"), /Authorization/);
  const admin = await w.fetch("/admin/settings", { method: "OPTIONS" });
  assert.equal(admin.headers.get("access-control-allow-origin"), null);
  assert.equal(admin.status, 405);
});

test("unknown routes get a JSON 404, unknown FHIR types an OperationOutcome", async () => {
  const { res, body } = await w.json("/no/such/thing");
  assert.equal(res.status, 404);
  assert.equal(body.error, "not_found");
  const fhir = await w.json("/fhir/Spaceship/123");
  assert.equal(fhir.res.status, 404);
  assert.match(fhir.res.headers.get("content-type"), /^application\/fhir\+json/);
  assert.equal(fhir.body.resourceType, "OperationOutcome");
  assert.equal(fhir.body.issue[0].code, "not-found");
});

test("HEAD answers like GET without a body", async () => {
  const res = await w.fetch("/fhir/.well-known/smart-configuration", { method: "HEAD" });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  assert.equal(await res.text(), "");
});

test("a wrong method gets 405 with Allow", async () => {
  const { res, body } = await w.json("/.well-known/jwks.json", { method: "POST", body: "x" });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET, HEAD");
  assert.equal(body.error, "invalid_request");
  const fhir = await w.json("/fhir/metadata", { method: "DELETE" });
  assert.equal(fhir.res.status, 405);
  assert.equal(fhir.body.resourceType, "OperationOutcome");
});

test("the token endpoint answers unsupported_grant_type for grants it does not know, uncached", async () => {
  const { res, body } = await w.json("/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: "grant_type=password&username=a&password=b",
  });
  assert.equal(res.status, 400);
  assert.equal(body.error, "unsupported_grant_type");
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.equal(res.headers.get("pragma"), "no-cache");
});

test("dev routes are off unless DEV_ROUTES is true", async () => {
  const off = await startWorker({ bindings: { DEV_ROUTES: "false" } });
  try {
    const res = await off.fetch("/_dev/sign?alg=ES256", { method: "POST", body: "{}" });
    assert.equal(res.status, 404);
  } finally {
    await off.dispose();
  }
});

for (const issuer of ["https://ehr.example.org", "http://ehr.example.org"]) {
  test(`DEV_ROUTES=true with a non-loopback issuer (${issuer}: a deployment) refuses every request with a clear 503`, async () => {
    const deployed = await startWorker({ bindings: { PUBLIC_BASE_URL: issuer, DEV_ROUTES: "true" } });
    try {
      const paths = [["/_dev/sign?alg=RS256", { method: "POST", body: "{}" }], ["/_dev/panic", { method: "POST" }], ["/fhir/.well-known/smart-configuration"], ["/auth/token", { method: "POST" }]];
      for (const [path, init] of paths) {
        const res = await deployed.fetch(path, init);
        assert.equal(res.status, 503, path);
        const body = await res.json();
        assert.equal(body.error, "server_error");
        assert.match(body.error_description, /DEV_ROUTES=true is for local development only/);
      }
    } finally {
      await deployed.dispose();
    }
  });
}


test("both discovery documents advertise the registration endpoint (RFC 7591)", async () => {
  const smart = (await w.json("/fhir/.well-known/smart-configuration")).body;
  const openid = (await w.json("/.well-known/openid-configuration")).body;
  assert.equal(smart.registration_endpoint, `${w.url}/auth/register`);
  assert.equal(openid.registration_endpoint, `${w.url}/auth/register`);
  // Nothing is published about brands or associated endpoints unless configured.
  assert.equal(smart.associated_endpoints, undefined);
  assert.equal(smart.user_access_brand_bundle, undefined);
  const { res, body } = await w.json("/user-access-brands.json");
  assert.equal(res.status, 404);
  assert.equal(body.error, "not_found");
});

test("associated endpoints and the User-access Brand come from the settings (SMART 2.2)", async () => {
  const admin = { Authorization: "Bearer test-admin-token", "Content-Type": "application/json" };
  const settings = {
    server_name: "Example Health",
    associated_endpoints: [{ url: "https://imaging.example.org/dicomweb", capabilities: ["launch-ehr"] }],
    user_access_brand: { website: "https://example-health.org", logo_uri: "https://example-health.org/logo.svg", portal_url: "https://portal.example-health.org" },
  };
  const refused = await w.fetch("/admin/settings", { method: "PUT", headers: admin, body: JSON.stringify({ ...settings, associated_endpoints: [{ url: "http://x.example", capabilities: [] }] }) });
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error, "invalid_request");
  const put = await w.fetch("/admin/settings", { method: "PUT", headers: admin, body: JSON.stringify(settings) });
  assert.equal(put.status, 200);
  try {
    const smart = (await w.json("/fhir/.well-known/smart-configuration")).body;
    assert.deepEqual(smart.associated_endpoints, settings.associated_endpoints);
    assert.equal(smart.user_access_brand_bundle, `${w.url}/user-access-brands.json`);
    assert.deepEqual(smart.user_access_brand_identifier, { system: "urn:ietf:rfc:3986", value: "https://example-health.org" });

    const { res, body } = await w.json(new URL(smart.user_access_brand_bundle).pathname);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^application\/fhir\+json/);
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    assert.equal(body.resourceType, "Bundle");
    assert.equal(body.type, "collection");
    const [organization, endpoint] = body.entry.map((e) => e.resource);
    assert.equal(organization.resourceType, "Organization");
    assert.equal(organization.name, "Example Health");
    assert.deepEqual(organization.identifier, [smart.user_access_brand_identifier], "the configuration identifies the brand of the bundle");
    const brand = organization.extension.find((e) => e.url === "http://hl7.org/fhir/StructureDefinition/organization-brand");
    assert.equal(brand.extension.find((e) => e.url === "brandLogo").valueUrl, settings.user_access_brand.logo_uri);
    const portal = organization.extension.find((e) => e.url === "http://hl7.org/fhir/StructureDefinition/organization-portal");
    assert.equal(portal.extension.find((e) => e.url === "portalUrl").valueUrl, settings.user_access_brand.portal_url);
    assert.equal(portal.extension.find((e) => e.url === "portalEndpoint").valueReference.reference, "Endpoint/fhir");
    assert.equal(endpoint.resourceType, "Endpoint");
    assert.equal(endpoint.address, `${w.url}/fhir`);
    assert.equal(endpoint.connectionType.code, "hl7-fhir-rest");
  } finally {
    await w.fetch("/admin/settings", { method: "PUT", headers: admin, body: JSON.stringify({}) });
  }
});
