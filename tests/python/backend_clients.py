"""Backend Services (SMART App Launch 2.2 §5) through two Python libraries nobody here wrote.

    backend_clients.py authlib <token_url> <client_id> <private_jwk.json> <scope>
        authlib's private_key_jwt with its default assertion header (alg and typ, no kid);
        only `exp` is set to four minutes ahead, since SMART refuses assertions that live
        longer than five (authlib's default is an hour).
    backend_clients.py fhirclient <fhir_base> <client_id> <assertion> <scope>
        fhirclient 4.4's backend flow: discovery from the CapabilityStatement, then
        client_credentials with the given assertion (fhirclient adds `launch/patient` to the
        scope it asks for), then a search with the token.

Prints one JSON object: what the library received (and, for authlib, the header it signed).
"""

import base64
import json
import sys
import time


def header_of(jwt):
    head = jwt.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def with_authlib(token_url, client_id, jwk_path, scope):
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import RSAKey

    sent = []

    class Recording(PrivateKeyJWT):
        def sign(self, auth, token_endpoint):
            assertion = super().sign(auth, token_endpoint)
            sent.append(assertion)
            return assertion

    with open(jwk_path) as f:
        key = RSAKey.import_key(json.load(f))
    method = Recording(token_url, alg="RS384", claims={"exp": int(time.time()) + 240})
    session = OAuth2Session(client_id, key, token_endpoint_auth_method=method, scope=scope)
    token = session.fetch_token(token_url, grant_type="client_credentials")
    return {"token": dict(token), "assertion_header": header_of(sent[0])}


def with_fhirclient(fhir_base, client_id, assertion, scope):
    from fhirclient import client

    smart = client.FHIRClient(settings={"app_id": client_id, "api_base": fhir_base, "jwt_token": assertion, "scope": scope})
    smart.prepare()
    # What the token endpoint answered, as fhirclient received it.
    granted = []
    request_access_token = smart.server.auth._request_access_token

    def recording(server, params):
        answer = request_access_token(server, params)
        granted.append(answer.get("scope"))
        return answer

    smart.server.auth._request_access_token = recording
    smart.authorize()
    bundle = smart.server.request_json("Patient?_count=1")
    return {
        "ready": smart.ready,
        "granted": granted[0] if granted else None,
        "asked": smart.desired_scope,
        "bundle_type": bundle.get("resourceType") + "/" + bundle.get("type", ""),
    }


def main():
    mode, *args = sys.argv[1:]
    result = with_authlib(*args) if mode == "authlib" else with_fhirclient(*args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
