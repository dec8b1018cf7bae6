// The peer for bench/tokens.mjs: node-oidc-provider (the certified Node.js OpenID provider)
// configured for the same work as smart-edge: client_credentials with private_key_jwt
// (ES256) issuing ES256 JWT access tokens, and refresh_token with rotation issuing an ES256
// JWT access token and an RS256 ID token. In-memory storage (its default adapter), one Node
// process. Prints "READY <json>" when listening; the json holds the refresh tokens it minted.
import Provider from "oidc-provider";
import { generateKeyPair, exportJWK } from "jose";

const [port, configJson] = process.argv.slice(2);
const { backendJwks, refreshChains } = JSON.parse(configJson);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = "https://fhir.example/fhir";

const signing = [];
for (const alg of ["ES256", "RS256"]) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  signing.push({ ...(await exportJWK(privateKey)), alg, use: "sig", kid: alg.toLowerCase() });
}

const provider = new Provider(issuer, {
  jwks: { keys: signing },
  clients: [
    {
      client_id: "bench-backend",
      token_endpoint_auth_method: "private_key_jwt",
      token_endpoint_auth_signing_alg: "ES256",
      jwks: backendJwks,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      scope: "system/Patient.rs system/Observation.rs",
    },
    {
      client_id: "bench-app",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: ["https://app.example/callback"],
      id_token_signed_response_alg: "RS256",
    },
  ],
  scopes: ["openid", "offline_access", "system/Patient.rs", "system/Observation.rs", "patient/*.rs"],
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  rotateRefreshToken: true,
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "system/Patient.rs system/Observation.rs patient/*.rs",
        audience: RESOURCE,
        accessTokenTTL: 300,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "ES256" } },
      }),
    },
  },
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));

// Refresh tokens minted directly (the interactive login is not what is measured).
const client = await provider.Client.find("bench-app");
const tokens = [];
for (let i = 0; i < refreshChains; i++) {
  const grant = new provider.Grant({ accountId: `user-${i}`, clientId: "bench-app" });
  grant.addOIDCScope("openid offline_access");
  grant.addResourceScope(RESOURCE, "patient/*.rs");
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    accountId: `user-${i}`,
    client,
    grantId,
    scope: "openid offline_access patient/*.rs",
    resource: RESOURCE,
    gty: "authorization_code",
    authTime: Math.floor(Date.now() / 1000),
  });
  tokens.push(await rt.save());
}

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`READY ${JSON.stringify({ issuer, token_endpoint: `${issuer}/token`, refresh_tokens: tokens })}`);
});
