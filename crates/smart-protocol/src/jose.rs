//! JOSE pieces the server and the SDK share: signature algorithms (RFC 7518 §3), JSON Web
//! Keys (RFC 7517) with RFC 7638 thumbprints as key ids, and the JWS compact serialization
//! (RFC 7515 §7.1).
//!
//! Signatures themselves are computed elsewhere (WebCrypto in the Worker and in the browser):
//! this module only builds the bytes to sign and assembles the token around the signature.

use crate::b64url;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// JWS algorithms smart-edge signs or verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwsAlgorithm {
    RS256,
    RS384,
    ES256,
    ES384,
}

impl JwsAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::RS256, Self::RS384, Self::ES256, Self::ES384].into_iter().find(|a| a.as_str() == s)
    }

    /// The JWK `kty` a key for this algorithm has.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::RS256 | Self::RS384 => "RSA",
            Self::ES256 | Self::ES384 => "EC",
        }
    }

    /// The curve of an EC algorithm (RFC 7518 §3.4 binds each ES algorithm to one curve).
    pub fn curve(self) -> Option<&'static str> {
        match self {
            Self::ES256 => Some("P-256"),
            Self::ES384 => Some("P-384"),
            _ => None,
        }
    }

    /// The WebCrypto algorithm name (`RSASSA-PKCS1-v1_5` or `ECDSA`) for import, generation
    /// and signing; with [`Self::hash`] and [`Self::curve`] it is all WebCrypto needs.
    pub fn webcrypto_name(self) -> &'static str {
        match self {
            Self::RS256 | Self::RS384 => "RSASSA-PKCS1-v1_5",
            Self::ES256 | Self::ES384 => "ECDSA",
        }
    }

    /// The SHA-2 variant named in WebCrypto's algorithm parameters.
    pub fn hash(self) -> &'static str {
        match self {
            Self::RS256 | Self::ES256 => "SHA-256",
            Self::RS384 | Self::ES384 => "SHA-384",
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("the key is not a JSON object with the JWK members: {0}")]
    Malformed(String),
    #[error("the key has no usable 'alg' (RS256, RS384, ES256 or ES384)")]
    UnknownAlgorithm,
    #[error("the key's kty/crv does not fit its alg {0}")]
    AlgorithmMismatch(JwsAlgorithm),
    #[error("the key lacks the member '{0}'")]
    Missing(&'static str),
}

/// A JSON Web Key, public or private, as the members RFC 7518 §6 defines for RSA and EC keys.
/// Unknown members (`key_ops`, `ext`, …) are dropped: smart-edge decides key usage itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
}

impl fmt::Debug for Jwk {
    // Private members never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("crv", &self.crv)
            .field("private", &self.is_private())
            .finish_non_exhaustive()
    }
}

impl Jwk {
    pub fn is_private(&self) -> bool {
        self.d.is_some()
    }

    /// The algorithm the key declares, checked against its type and curve.
    pub fn algorithm(&self) -> Result<JwsAlgorithm, JwkError> {
        let alg = self.alg.as_deref().and_then(JwsAlgorithm::parse).ok_or(JwkError::UnknownAlgorithm)?;
        if self.kty != alg.key_type() || self.crv.as_deref() != alg.curve() {
            return Err(JwkError::AlgorithmMismatch(alg));
        }
        Ok(alg)
    }

    /// Checks that the members a public key of its algorithm needs are present.
    pub fn validate_public(&self) -> Result<JwsAlgorithm, JwkError> {
        let alg = self.algorithm()?;
        let required: &[(&'static str, &Option<String>)] = match alg.key_type() {
            "RSA" => &[("n", &self.n), ("e", &self.e)],
            _ => &[("x", &self.x), ("y", &self.y)],
        };
        for (name, value) in required {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(JwkError::Missing(name));
            }
        }
        Ok(alg)
    }

    /// Checks that the key is a complete private key of its algorithm.
    pub fn validate_private(&self) -> Result<JwsAlgorithm, JwkError> {
        let alg = self.validate_public()?;
        if self.d.as_deref().is_none_or(str::is_empty) {
            return Err(JwkError::Missing("d"));
        }
        Ok(alg)
    }

    /// The public half, with `use: sig`, as it is published in a JWKS.
    pub fn to_public(&self) -> Jwk {
        Jwk {
            kty: self.kty.clone(),
            kid: self.kid.clone(),
            alg: self.alg.clone(),
            use_: Some("sig".to_owned()),
            crv: self.crv.clone(),
            x: self.x.clone(),
            y: self.y.clone(),
            n: self.n.clone(),
            e: self.e.clone(),
            ..Jwk::default()
        }
    }

    /// RFC 7638 thumbprint (SHA-256, base64url): the required public members in lexicographic
    /// order, no whitespace. Used as the `kid` of generated keys, so a key id is stable and
    /// anyone can recompute it.
    pub fn thumbprint(&self) -> Result<String, JwkError> {
        self.validate_public()?;
        // All member values are base64url or fixed names, so no JSON escaping is needed; serde
        // still does the quoting to stay honest.
        let q = |v: &Option<String>| serde_json::to_string(v.as_deref().unwrap_or_default()).unwrap_or_default();
        let canonical = match self.kty.as_str() {
            "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, q(&self.e), q(&self.n)),
            _ => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, q(&self.crv), q(&self.x), q(&self.y)),
        };
        Ok(b64url::encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The protected header of a compact JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwsHeader {
    pub alg: JwsAlgorithm,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    pub kid: String,
}

/// The `header.payload` part of a compact JWS: the bytes a signer signs.
pub fn signing_input<C: Serialize>(header: &JwsHeader, claims: &C) -> Result<String, serde_json::Error> {
    let header = b64url::encode(serde_json::to_vec(header)?);
    let payload = b64url::encode(serde_json::to_vec(claims)?);
    Ok(format!("{header}.{payload}"))
}

/// Appends the signature to a signing input, giving the compact serialization.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", b64url::encode(signature))
}

/// Why a compact JWS was refused before its signature was even checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the JWS header is not valid: {0}")]
    BadHeader(String),
    #[error("the JWS payload is not a JSON object")]
    BadPayload,
}

/// A compact JWS split into its parts; nothing is trusted yet.
#[derive(Debug, Clone)]
pub struct UnverifiedJws<'a> {
    pub header: JwsHeader,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub payload: serde_json::Map<String, serde_json::Value>,
    pub signature: Vec<u8>,
}

/// The raw header as sent, to check `alg` before it is mapped onto [`JwsAlgorithm`] (so that
/// `none` and `HS256` are refused by name). Read with whatever JSON reader the caller has (the
/// browser SDK carries its own small one), then judged by [`CompactParts::header`].
#[derive(Debug, Clone, Deserialize)]
pub struct RawHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
}

/// A compact JWS cut into its three parts and base64url-decoded; no JSON read yet.
#[derive(Debug, Clone)]
pub struct CompactParts<'a> {
    /// The header's JSON bytes.
    pub header: Vec<u8>,
    /// The payload's JSON bytes.
    pub payload: Vec<u8>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Splits a compact JWS (at most 16 KiB) into its decoded parts.
pub fn split_compact(token: &str) -> Result<CompactParts<'_>, JwsError> {
    if token.len() > 16 * 1024 {
        return Err(JwsError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed);
    };
    let decode = |part: &str| b64url::decode(part).ok_or(JwsError::Malformed);
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(JwsError::Malformed)?;
    Ok(CompactParts { header: decode(h)?, payload: decode(p)?, signing_input, signature: decode(s)? })
}

impl CompactParts<'_> {
    /// The header, judged: only the four signature algorithms (so `none` and HMAC never reach a
    /// verifier); `kid` required unless `require_kid` is false (then a missing one is empty).
    pub fn header(raw: RawHeader, require_kid: bool) -> Result<JwsHeader, JwsError> {
        let alg = JwsAlgorithm::parse(&raw.alg).ok_or_else(|| JwsError::BadHeader(format!("alg {} is not accepted", raw.alg)))?;
        let kid = match raw.kid {
            Some(kid) => kid,
            None if !require_kid => String::new(),
            None => return Err(JwsError::BadHeader("no kid".into())),
        };
        Ok(JwsHeader { alg, typ: raw.typ, kid })
    }
}

/// Splits and decodes a compact JWS. Refuses `alg` values other than the four signature
/// algorithms (so `none` and HMAC never reach a verifier), and a header without `kid`.
pub fn parse_compact(token: &str) -> Result<UnverifiedJws<'_>, JwsError> {
    parse(token, true)
}

/// [`parse_compact`] where `kid` is optional (RFC 7515 §4.1.4): a token from another server
/// (OpenID Connect Core §10.1: it may be left out when the key set has one key per algorithm)
/// and a client's `private_key_jwt` assertion (authlib leaves it out by default; the server then
/// tries a few of the client's keys). A missing `kid` is the empty string.
pub fn parse_compact_any_kid(token: &str) -> Result<UnverifiedJws<'_>, JwsError> {
    parse(token, false)
}

fn parse(token: &str, require_kid: bool) -> Result<UnverifiedJws<'_>, JwsError> {
    let parts = split_compact(token)?;
    let raw: RawHeader = serde_json::from_slice(&parts.header).map_err(|e| JwsError::BadHeader(e.to_string()))?;
    let header = CompactParts::header(raw, require_kid)?;
    let payload: serde_json::Value = serde_json::from_slice(&parts.payload).map_err(|_| JwsError::BadPayload)?;
    let serde_json::Value::Object(payload) = payload else { return Err(JwsError::BadPayload) };
    Ok(UnverifiedJws { header, signing_input: parts.signing_input, payload, signature: parts.signature })
}

/// The most keys of a published key set a client tries for one signature.
pub const MAX_KEYS_TRIED: usize = 4;

/// The keys of a published key set (JWKS members, read through [`crate::fields::Object`])
/// that may have made a signature with `header`: the algorithm's key type, a signing key (`use`
/// absent or `sig`), the header's `kid` when it names one (OpenID Connect Core §10.1 lets it be
/// left out when the set holds one key per algorithm); at most [`MAX_KEYS_TRIED`].
pub fn verification_candidates<'k, K: crate::fields::Object>(keys: &'k [K], header: &JwsHeader) -> Vec<&'k K> {
    keys.iter().filter(|k| key_may_verify(k.text("kty"), k.text("use"), k.text("kid"), header)).take(MAX_KEYS_TRIED).collect()
}

/// Whether a key (its `kty`, `use`, `kid`) may have made a signature with `header`: the
/// algorithm's key type, a signing key (`use` absent or `sig`), and the header's `kid` when it
/// names one. The one rule for the SDK (ID tokens) and the server (client assertions).
pub fn key_may_verify(kty: Option<&str>, use_: Option<&str>, kid: Option<&str>, header: &JwsHeader) -> bool {
    kty == Some(header.alg.key_type()) && use_.is_none_or(|u| u == "sig") && (header.kid.is_empty() || kid == Some(header.kid.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let key: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","alg":"RS256","kid":"2011-04-29","e":"AQAB",
            "n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#,
        )
        .unwrap();
        assert_eq!(key.thumbprint().unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn public_half_drops_every_private_member() {
        let private = Jwk {
            kty: "EC".into(),
            alg: Some("ES256".into()),
            crv: Some("P-256".into()),
            x: Some("x".into()),
            y: Some("y".into()),
            d: Some("secret".into()),
            ..Jwk::default()
        };
        assert_eq!(private.validate_private(), Ok(JwsAlgorithm::ES256));
        let public = private.to_public();
        assert!(!public.is_private());
        let json = serde_json::to_string(&public).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert!(json.contains(r#""use":"sig""#));
        assert!(!format!("{private:?}").contains("secret"));
    }

    #[test]
    fn refuses_keys_whose_type_does_not_fit_the_algorithm() {
        let key = Jwk { kty: "RSA".into(), alg: Some("ES256".into()), ..Jwk::default() };
        assert_eq!(key.algorithm(), Err(JwkError::AlgorithmMismatch(JwsAlgorithm::ES256)));
        let key = Jwk { kty: "EC".into(), alg: Some("ES256".into()), crv: Some("P-384".into()), ..Jwk::default() };
        assert_eq!(key.algorithm(), Err(JwkError::AlgorithmMismatch(JwsAlgorithm::ES256)));
        let key = Jwk { kty: "RSA".into(), alg: Some("HS256".into()), ..Jwk::default() };
        assert_eq!(key.algorithm(), Err(JwkError::UnknownAlgorithm));
        let key = Jwk { kty: "RSA".into(), alg: Some("RS256".into()), n: Some("n".into()), ..Jwk::default() };
        assert_eq!(key.validate_public(), Err(JwkError::Missing("e")));
    }

    #[test]
    fn parse_compact_refuses_none_hmac_and_garbage() {
        let enc = |v: serde_json::Value| B64URL.encode(v.to_string());
        let body = enc(serde_json::json!({"sub": "x"}));
        for alg in ["none", "HS256", "PS256"] {
            let token = format!("{}.{body}.", enc(serde_json::json!({"alg": alg, "kid": "k"})));
            assert!(matches!(parse_compact(&token), Err(JwsError::BadHeader(_))), "{alg}");
        }
        let no_kid = format!("{}.{body}.AA", enc(serde_json::json!({"alg": "ES256"})));
        assert!(matches!(parse_compact(&no_kid), Err(JwsError::BadHeader(_))));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(parse_compact(bad).is_err(), "{bad}");
        }
        let array = format!("{}.{}.AA", enc(serde_json::json!({"alg": "ES256", "kid": "k"})), enc(serde_json::json!([1])));
        assert_eq!(parse_compact(&array).unwrap_err(), JwsError::BadPayload);
        let good = format!("{}.{body}.AQID", enc(serde_json::json!({"alg": "ES256", "kid": "k", "typ": "JWT"})));
        let parsed = parse_compact(&good).unwrap();
        assert_eq!(parsed.signature, vec![1, 2, 3]);
        assert_eq!(parsed.header.kid, "k");
        assert_eq!(parsed.payload["sub"], "x");
        assert!(good.starts_with(parsed.signing_input) && parsed.signing_input.matches('.').count() == 1);
    }

    #[test]
    fn compact_serialization_is_three_base64url_parts() {
        let header = JwsHeader { alg: JwsAlgorithm::ES256, typ: Some("JWT".into()), kid: "k1".into() };
        let input = signing_input(&header, &serde_json::json!({"sub": "a"})).unwrap();
        let token = compact(&input, &[1, 2, 3]);
        let parts: Vec<_> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(B64URL.decode(parts[0]).unwrap(), br#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#);
        assert_eq!(parts[2], "AQID");
    }

    #[test]
    fn verification_candidates_follow_key_type_use_and_kid() {
        let set = serde_json::json!([
            {"kty": "RSA", "kid": "r1"},
            {"kty": "EC", "kid": "e1", "use": "enc"},
            {"kty": "EC", "kid": "e2", "use": "sig"},
            {"kty": "EC", "kid": "e3"},
            {"kty": "EC", "kid": "e4"},
            {"kty": "EC", "kid": "e5"},
            {"kty": "EC", "kid": "e6"}
        ]);
        let keys: Vec<serde_json::Map<String, serde_json::Value>> = set.as_array().unwrap().iter().map(|k| k.as_object().unwrap().clone()).collect();
        let kids = |header: &JwsHeader| {
            verification_candidates(&keys, header).iter().map(|k| crate::fields::Object::text(*k, "kid").unwrap().to_owned()).collect::<Vec<_>>()
        };
        let named = JwsHeader { alg: JwsAlgorithm::ES256, typ: None, kid: "e3".into() };
        assert_eq!(kids(&named), ["e3"]);
        let unnamed = JwsHeader { kid: String::new(), ..named.clone() };
        assert_eq!(kids(&unnamed), ["e2", "e3", "e4", "e5"], "EC signing keys, at most four");
        let rsa = JwsHeader { alg: JwsAlgorithm::RS256, ..unnamed.clone() };
        assert_eq!(kids(&rsa), ["r1"]);
        let encryption_key = JwsHeader { kid: "e1".into(), ..named };
        assert!(kids(&encryption_key).is_empty(), "an encryption key never verifies a signature");
    }
}
