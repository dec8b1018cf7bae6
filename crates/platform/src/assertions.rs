//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3; SMART App Launch 2.2 §5
//! "Backend Services"): a JWT the client signs with its own key, checked against the keys it
//! registered (inline JWKS or JWKS URL).
//!
//! Every failure is `invalid_client`. The replay check on `jti` needs strongly consistent
//! storage and is done by the caller with [`Accepted::jti`] and [`Accepted::exp`].

use crate::ports::{CryptoError, Verifier};
use serde_json::Value;
use smart_protocol::jose::{self, Jwk, Jwks, JwsAlgorithm};
use smart_protocol::{OAuthError, OAuthErrorCode};

/// How far ahead `exp` may be (SMART: "no more than five minutes in the future").
pub const MAX_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated on `exp` / `nbf` / `iat`.
pub const LEEWAY_SECS: i64 = 60;
/// Algorithms accepted in assertions (SMART requires RS384 and ES384 support).
pub const ALGORITHMS: [JwsAlgorithm; 4] = [JwsAlgorithm::RS384, JwsAlgorithm::ES384, JwsAlgorithm::RS256, JwsAlgorithm::ES256];

fn invalid(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidClient, description)
}

/// An assertion whose signature and claims passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub client_id: String,
    pub jti: String,
    pub exp: i64,
}

/// The `iss` (= client id) an assertion claims, read before anything is verified, so the
/// caller can load that client's keys.
pub fn claimed_client(assertion: &str) -> Result<String, OAuthError> {
    let jws = jose::parse_compact_any_kid(assertion).map_err(|e| invalid(&format!("client_assertion: {e}")))?;
    jws.payload.get("iss").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| invalid("client_assertion has no iss"))
}

/// The most registered keys tried for an assertion without `kid`: each try is a signature
/// verification, so a client with many keys cannot make one request cost many.
pub const MAX_KEYS_WITHOUT_KID: usize = 3;

/// The registered keys that may have signed an assertion with this header
/// ([`jose::key_may_verify`]: key type, `use`, `kid`, and here also the key's own `alg`): the
/// one named by `kid`, or, when the header has none, the last [`MAX_KEYS_WITHOUT_KID`] keys of
/// its algorithm (the most recently listed: a rotation appends the new key). SMART requires
/// `kid`, but libraries such as authlib leave it out by default; RFC 7515 §4.1.4 makes it
/// optional, and trying a few keys of the right algorithm is what their users expect.
fn candidates<'k>(header: &jose::JwsHeader, keys: &'k Jwks) -> Vec<&'k Jwk> {
    let usable: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|k| k.validate_public().ok() == Some(header.alg) && jose::key_may_verify(Some(&k.kty), k.use_.as_deref(), k.kid.as_deref(), header))
        .collect();
    let limit = if header.kid.is_empty() { MAX_KEYS_WITHOUT_KID } else { 1 };
    usable[usable.len().saturating_sub(limit)..].to_vec()
}

/// Whether the assertion's header names no key (`kid`): then no cached key set can tell
/// whether the client rotated, and the caller fetches it again when none verifies.
pub fn names_no_key(assertion: &str) -> bool {
    jose::parse_compact_any_kid(assertion).is_ok_and(|jws| jws.header.kid.is_empty())
}

/// Whether the key set has a key that may have signed the assertion (else the JWKS URL is
/// fetched again: the client may have rotated).
pub fn has_key(assertion: &str, keys: &Jwks) -> bool {
    jose::parse_compact_any_kid(assertion).is_ok_and(|jws| !candidates(&jws.header, keys).is_empty())
}

fn key_names(keys: &[&Jwk]) -> String {
    keys.iter().map(|k| k.kid.as_deref().unwrap_or("(no kid)")).collect::<Vec<_>>().join(", ")
}

/// Verifies the signature with the client's key named by `kid` (or, without `kid`, with the
/// first registered keys of the header's algorithm, see [`candidates`]) and checks the claims:
/// `iss` = `sub` = client id, `aud` = one of `audiences` (the token URL; at introspection and
/// revocation also that endpoint's URL, RFC 7523 §3), `exp` in the future and at most five
/// minutes ahead, a `jti`.
pub async fn verify(
    assertion: &str,
    client_id: &str,
    keys: &Jwks,
    audiences: &[&str],
    verifier: &dyn Verifier,
    now: i64,
) -> Result<Result<Accepted, OAuthError>, CryptoError> {
    let jws = match jose::parse_compact_any_kid(assertion) {
        Ok(jws) => jws,
        Err(e) => return Ok(Err(invalid(&format!("client_assertion: {e}")))),
    };
    if !ALGORITHMS.contains(&jws.header.alg) {
        return Ok(Err(invalid("client_assertion alg is not accepted")));
    }
    let candidates = candidates(&jws.header, keys);
    if candidates.is_empty() {
        let which = if jws.header.kid.is_empty() { "alg" } else { "kid and alg" };
        return Ok(Err(invalid(&format!("no registered key matches the assertion's {which}"))));
    }
    let mut verified = false;
    for key in &candidates {
        if verifier.verify(key, jws.signing_input.as_bytes(), &jws.signature).await? {
            verified = true;
            break;
        }
    }
    if !verified {
        let tried = key_names(&candidates);
        return Ok(Err(invalid(&format!("the client_assertion signature does not verify with the registered key(s) tried: {tried}"))));
    }
    let claims = &jws.payload;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Ok(Err(invalid("client_assertion iss and sub must be the client_id")));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => audiences.contains(&aud.as_str()),
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
        _ => false,
    };
    if !aud_ok {
        return Ok(Err(invalid("client_assertion aud must be the token endpoint URL")));
    }
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Ok(Err(invalid("client_assertion has no exp")));
    };
    if exp <= now - LEEWAY_SECS {
        return Ok(Err(invalid("client_assertion has expired")));
    }
    if exp > now + MAX_LIFETIME_SECS + LEEWAY_SECS {
        return Ok(Err(invalid("client_assertion exp is more than five minutes ahead")));
    }
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Ok(Err(invalid("client_assertion is not valid yet")));
    }
    if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat > now + LEEWAY_SECS) {
        return Ok(Err(invalid("client_assertion is issued in the future")));
    }
    let Some(jti) = text("jti").filter(|j| !j.is_empty() && j.len() <= 256) else {
        return Ok(Err(invalid("client_assertion needs a jti")));
    };
    Ok(Ok(Accepted { client_id: client_id.to_owned(), jti: jti.to_owned(), exp }))
}

/// A used `jti` may be forgotten once its assertion has expired (with leeway): from then on
/// the assertion itself is refused.
pub fn forget_before(now: i64) -> i64 {
    now - LEEWAY_SECS
}

/// Seen `jti`s of one client, until their assertion expires (the in-memory form of the
/// Durable Object's table).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JtiLog {
    pub seen: Vec<(String, i64)>,
}

impl JtiLog {
    /// Records `jti`; `false` when it was already used (a replay).
    pub fn record(&mut self, jti: &str, exp: i64, now: i64) -> bool {
        self.seen.retain(|(_, e)| *e > forget_before(now));
        if self.seen.iter().any(|(j, _)| j == jti) {
            return false;
        }
        self.seen.push((jti.to_owned(), exp));
        true
    }
}

/// The least time between two fetches of a client's JWKS URL for an assertion whose `kid` the
/// cached set lacks: a client (or anyone naming it) cannot make the server fetch on every
/// request.
pub const JWKS_REFETCH_MIN_SECS: i64 = 10;

/// Whether a cached key set (fetched at `fetched_at`, fresh until `expires_at`) answers, or
/// the URL is fetched again: when it is stale, or when an unknown `kid` asks for a refetch
/// and the last fetch is at least [`JWKS_REFETCH_MIN_SECS`] old.
pub fn cached_jwks_usable(now: i64, fetched_at: i64, expires_at: i64, refetch_for_unknown_kid: bool) -> bool {
    let fresh = now < expires_at;
    let may_refetch = now - fetched_at >= JWKS_REFETCH_MIN_SECS;
    fresh && !(refetch_for_unknown_kid && may_refetch)
}

/// `max-age` of a `Cache-Control` header, bounded to [60 s, 1 day]; 5 minutes by default.
pub fn jwks_cache_secs(cache_control: Option<&str>) -> i64 {
    let max_age = cache_control.and_then(|v| v.split(',').filter_map(|d| d.trim().strip_prefix("max-age=")).find_map(|n| n.trim().parse::<i64>().ok()));
    let no_store = cache_control.is_some_and(|v| v.contains("no-store") || v.contains("no-cache"));
    if no_store {
        return 60;
    }
    max_age.unwrap_or(300).clamp(60, 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{FakeKeyGenerator, FakeSigner, FakeVerifier};
    use crate::ports::{KeyGenerator, Signer};
    use futures::executor::block_on;
    use serde_json::json;

    const TOKEN_URL: &str = "https://ehr.example/auth/token";

    fn key(alg: JwsAlgorithm) -> Jwk {
        let mut jwk = block_on(FakeKeyGenerator::default().generate(alg)).unwrap();
        jwk.kid = Some("k1".into());
        jwk
    }

    fn assertion(key: &Jwk, alg: JwsAlgorithm, claims: Value) -> String {
        let header = jose::JwsHeader { alg, typ: Some("JWT".into()), kid: key.kid.clone().unwrap() };
        let input = jose::signing_input(&header, &claims).unwrap();
        jose::compact(&input, &block_on(FakeSigner.sign(key, input.as_bytes())).unwrap())
    }

    fn claims(exp: i64) -> Value {
        json!({"iss": "backend", "sub": "backend", "aud": TOKEN_URL, "exp": exp, "jti": "j-1"})
    }

    #[test]
    fn accepts_a_good_assertion_in_each_algorithm() {
        for alg in ALGORITHMS {
            let key = key(alg);
            let jwks = Jwks { keys: vec![key.to_public()] };
            let token = assertion(&key, alg, claims(1200));
            assert_eq!(claimed_client(&token).unwrap(), "backend");
            assert!(has_key(&token, &jwks));
            let accepted = block_on(verify(&token, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap();
            assert_eq!(accepted.jti, "j-1");
        }
    }

    #[test]
    fn refuses_every_bad_claim_as_invalid_client() {
        let key = key(JwsAlgorithm::ES384);
        let jwks = Jwks { keys: vec![key.to_public()] };
        let check = |claims: Value| {
            let token = assertion(&key, JwsAlgorithm::ES384, claims);
            block_on(verify(&token, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap_err()
        };
        let mut c = claims(1200);
        c["iss"] = json!("other");
        assert_eq!(check(c).error, OAuthErrorCode::InvalidClient);
        let mut c = claims(1200);
        c["aud"] = json!("https://ehr.example/other");
        assert!(check(c).error_description.unwrap().contains("aud"));
        assert!(check(claims(1000 - LEEWAY_SECS)).error_description.unwrap().contains("expired"));
        assert!(check(claims(1000 + MAX_LIFETIME_SECS + LEEWAY_SECS + 1)).error_description.unwrap().contains("five minutes"));
        let mut c = claims(1200);
        c["iat"] = json!(1000 + LEEWAY_SECS + 1);
        assert!(check(c).error_description.unwrap().contains("future"));
        let mut c = claims(1200);
        c["nbf"] = json!(1000 + LEEWAY_SECS + 1);
        assert!(check(c).error_description.unwrap().contains("not valid yet"));
        let mut c = claims(1200);
        c.as_object_mut().unwrap().remove("jti");
        assert!(check(c).error_description.unwrap().contains("jti"));
        let good = assertion(&key, JwsAlgorithm::ES384, claims(1200));
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let tampered = format!(
            "{head}.{}.{signature}",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                json!({"iss": "backend", "sub": "backend", "aud": TOKEN_URL, "exp": 1200, "jti": "j-2"}).to_string()
            )
        );
        assert!(block_on(verify(&tampered, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000))
            .unwrap()
            .unwrap_err()
            .error_description
            .unwrap()
            .contains("signature"));
        let mut c = claims(1200);
        c["aud"] = json!(["x", TOKEN_URL]);
        let token = assertion(&key, JwsAlgorithm::ES384, c);
        assert!(block_on(verify(&token, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().is_ok(), "aud may be an array");
        // Signed by a key that is not registered (another algorithm under the same kid).
        let mut other = block_on(FakeKeyGenerator::default().generate(JwsAlgorithm::RS384)).unwrap();
        other.kid = Some("k1".into());
        let token = assertion(&other, JwsAlgorithm::RS384, claims(1200));
        assert!(block_on(verify(&token, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().is_err());
    }

    /// An assertion signed by `key` whose header has no `kid` (authlib's default).
    fn assertion_without_kid(key: &Jwk, alg: JwsAlgorithm, claims: Value) -> String {
        let header = b64url_json(&json!({"alg": alg, "typ": "JWT"}));
        let input = format!("{header}.{}", b64url_json(&claims));
        jose::compact(&input, &block_on(FakeSigner.sign(key, input.as_bytes())).unwrap())
    }

    fn b64url_json(value: &Value) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, value.to_string())
    }

    fn named(alg: JwsAlgorithm, kid: &str) -> Jwk {
        let mut jwk = block_on(FakeKeyGenerator::default().generate(alg)).unwrap();
        jwk.kid = Some(kid.into());
        jwk
    }

    #[test]
    fn without_kid_the_first_keys_of_the_algorithm_are_tried_and_named_when_none_verifies() {
        let (a, b, rsa) = (named(JwsAlgorithm::ES384, "a"), named(JwsAlgorithm::ES384, "b"), named(JwsAlgorithm::RS384, "r"));
        let jwks = Jwks { keys: vec![rsa.to_public(), a.to_public(), b.to_public()] };
        let by_b = assertion_without_kid(&b, JwsAlgorithm::ES384, claims(1200));
        assert_eq!(claimed_client(&by_b).unwrap(), "backend");
        assert!(has_key(&by_b, &jwks));
        let accepted = block_on(verify(&by_b, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap();
        assert_eq!(accepted.client_id, "backend", "the second ES384 key verifies");

        let stranger = named(JwsAlgorithm::ES384, "s");
        let by_stranger = assertion_without_kid(&stranger, JwsAlgorithm::ES384, claims(1200));
        let refused = block_on(verify(&by_stranger, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap_err();
        assert_eq!(refused.error, OAuthErrorCode::InvalidClient);
        assert_eq!(refused.error_description.as_deref(), Some("the client_assertion signature does not verify with the registered key(s) tried: a, b"));

        let by_es256 = assertion_without_kid(&named(JwsAlgorithm::ES256, "e"), JwsAlgorithm::ES256, claims(1200));
        assert!(!has_key(&by_es256, &jwks), "no key of that algorithm: the JWKS URL may be fetched again");
        let refused = block_on(verify(&by_es256, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap_err();
        assert_eq!(refused.error_description.as_deref(), Some("no registered key matches the assertion's alg"));
    }

    #[test]
    fn without_kid_at_most_three_keys_are_tried() {
        let keys: Vec<Jwk> = (0..5).map(|i| named(JwsAlgorithm::ES384, &format!("k{i}"))).collect();
        let jwks = Jwks { keys: keys.iter().map(Jwk::to_public).collect() };
        let by_second = assertion_without_kid(&keys[1], JwsAlgorithm::ES384, claims(1200));
        let refused = block_on(verify(&by_second, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap_err();
        assert!(refused.error_description.unwrap().ends_with("tried: k2, k3, k4"), "the most recently listed keys");
        let by_third = assertion_without_kid(&keys[2], JwsAlgorithm::ES384, claims(1200));
        assert!(block_on(verify(&by_third, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().is_ok());
        assert!(names_no_key(&by_third));
        assert!(!names_no_key(&assertion(&keys[0], JwsAlgorithm::ES384, claims(1200))));
    }

    #[test]
    fn an_encryption_key_never_verifies_an_assertion() {
        let enc = named(JwsAlgorithm::ES384, "enc");
        let mut registered = enc.to_public();
        registered.use_ = Some("enc".into());
        let jwks = Jwks { keys: vec![registered] };
        for token in [assertion(&enc, JwsAlgorithm::ES384, claims(1200)), assertion_without_kid(&enc, JwsAlgorithm::ES384, claims(1200))] {
            assert!(!has_key(&token, &jwks));
            assert!(block_on(verify(&token, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().is_err());
        }
    }

    #[test]
    fn with_a_kid_only_that_key_is_tried() {
        let (a, b) = (named(JwsAlgorithm::ES384, "a"), named(JwsAlgorithm::ES384, "b"));
        let jwks = Jwks { keys: vec![a.to_public(), b.to_public()] };
        // Signed by b but naming a: b is not tried.
        let input = format!("{}.{}", b64url_json(&json!({"alg": "ES384", "kid": "a"})), b64url_json(&claims(1200)));
        let token = jose::compact(&input, &block_on(FakeSigner.sign(&b, input.as_bytes())).unwrap());
        let refused = block_on(verify(&token, "backend", &jwks, &[TOKEN_URL], &FakeVerifier, 1000)).unwrap().unwrap_err();
        assert!(refused.error_description.unwrap().ends_with("tried: a"));
    }

    #[test]
    fn a_jti_is_accepted_once_while_its_assertion_lives() {
        let mut log = JtiLog::default();
        assert!(log.record("a", 1300, 1000));
        assert!(!log.record("a", 1300, 1100));
        assert!(log.record("b", 1300, 1100));
        assert!(log.record("a", 1400, 1300 + LEEWAY_SECS), "forgotten after its assertion expired");
    }

    #[test]
    fn an_unknown_kid_refetches_at_most_every_ten_seconds() {
        assert!(cached_jwks_usable(100, 100, 400, false));
        assert!(!cached_jwks_usable(400, 100, 400, false), "stale");
        assert!(cached_jwks_usable(109, 100, 400, true), "too soon after the last fetch");
        assert!(!cached_jwks_usable(110, 100, 400, true));
    }

    #[test]
    fn jwks_cache_follows_cache_control_within_bounds() {
        assert_eq!(jwks_cache_secs(Some("public, max-age=600")), 600);
        assert_eq!(jwks_cache_secs(Some("max-age=5")), 60);
        assert_eq!(jwks_cache_secs(Some("no-store")), 60);
        assert_eq!(jwks_cache_secs(None), 300);
        assert_eq!(jwks_cache_secs(Some("max-age=99999999")), 86_400);
    }
}
