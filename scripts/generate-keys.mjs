// Prints a SIGNING_KEYS secret: {"keys":[RS256 private JWK, ES256 private JWK]}, each with its
// RFC 7638 thumbprint as kid. Usage: npm run --silent keys:generate | npx wrangler secret put SIGNING_KEYS
import { generateKeyPair, exportJWK, calculateJwkThumbprint } from "jose";

const keys = [];
for (const alg of ["RS256", "ES256"]) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const jwk = { ...(await exportJWK(privateKey)), alg };
  jwk.kid = await calculateJwkThumbprint(jwk, "sha256");
  keys.push(jwk);
}
process.stdout.write(JSON.stringify({ keys }));
