//! The server's public URLs: one place that derives every endpoint from the issuer and the
//! FHIR base, so discovery documents, tokens and redirects can never disagree.
//!
//! SMART App Launch 2.2 §2.0.4 (<https://hl7.org/fhir/smart-app-launch/conformance.html>) asks
//! for absolute URLs; OpenID Connect Discovery §4.3 asks that `issuer` equal, character for
//! character, the URL the configuration was fetched under (minus the well-known suffix).

use std::fmt;
use url::Url;

/// Path prefix of the authorization server's own endpoints.
pub const AUTH_PREFIX: &str = "/auth";

/// Why a base URL or FHIR path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlConfigError {
    #[error("the public base URL must be an absolute http(s) URL without query or fragment: {0}")]
    BadBase(String),
    #[error("the FHIR base path must start with '/', must not end with '/' and must not be '/': {0}")]
    BadFhirPath(String),
}

/// The issuer (an origin plus an optional path prefix, never a trailing slash) and the FHIR
/// base path below it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrls {
    issuer: String,
    fhir_path: String,
}

impl ServerUrls {
    /// `base` is the public origin the server is reached under (`https://ehr.example.org` or
    /// `http://127.0.0.1:8787`); `fhir_path` the FHIR base path (`/fhir`).
    pub fn new(base: &str, fhir_path: &str) -> Result<Self, UrlConfigError> {
        let parsed = Url::parse(base).map_err(|_| UrlConfigError::BadBase(base.to_owned()))?;
        let scheme_ok = matches!(parsed.scheme(), "http" | "https");
        if !scheme_ok
            || parsed.cannot_be_a_base()
            || parsed.host_str().is_none()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(UrlConfigError::BadBase(base.to_owned()));
        }
        if !fhir_path.starts_with('/') || fhir_path.len() < 2 || fhir_path.ends_with('/') || fhir_path.contains(['?', '#', ' ']) {
            return Err(UrlConfigError::BadFhirPath(fhir_path.to_owned()));
        }
        let issuer = parsed.as_str().trim_end_matches('/').to_owned();
        Ok(Self { issuer, fhir_path: fhir_path.to_owned() })
    }

    /// The OpenID / OAuth issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The path of the FHIR base below the issuer (`/fhir`).
    pub fn fhir_path(&self) -> &str {
        &self.fhir_path
    }

    /// The absolute FHIR base URL: the `aud` every authorization request must name, and the
    /// `iss` of an EHR launch.
    pub fn fhir_base(&self) -> String {
        format!("{}{}", self.issuer, self.fhir_path)
    }

    pub fn smart_configuration(&self) -> String {
        format!("{}/.well-known/smart-configuration", self.fhir_base())
    }

    pub fn openid_configuration(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    pub fn jwks(&self) -> String {
        format!("{}/.well-known/jwks.json", self.issuer)
    }

    pub fn authorize(&self) -> String {
        self.auth("authorize")
    }

    pub fn token(&self) -> String {
        self.auth("token")
    }

    pub fn introspect(&self) -> String {
        self.auth("introspect")
    }

    pub fn revoke(&self) -> String {
        self.auth("revoke")
    }

    pub fn userinfo(&self) -> String {
        self.auth("userinfo")
    }

    pub fn manage(&self) -> String {
        self.auth("manage")
    }

    /// RFC 7591 §3 client registration endpoint.
    pub fn register(&self) -> String {
        self.auth("register")
    }

    /// RFC 7592 §1 `registration_client_uri` of one client.
    pub fn registration_client(&self, client_id: &str) -> String {
        format!("{}/{client_id}", self.register())
    }

    /// The User-access Brands Bundle (SMART App Launch 2.2 `user_access_brand_bundle`).
    pub fn user_access_brands(&self) -> String {
        format!("{}/user-access-brands.json", self.issuer)
    }

    fn auth(&self, endpoint: &str) -> String {
        format!("{}{AUTH_PREFIX}/{endpoint}", self.issuer)
    }
}

impl fmt::Debug for ServerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrls({} + {})", self.issuer, self.fhir_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_every_endpoint_from_issuer_and_fhir_path() {
        let urls = ServerUrls::new("http://127.0.0.1:8787/", "/fhir").unwrap();
        assert_eq!(urls.issuer(), "http://127.0.0.1:8787");
        assert_eq!(urls.fhir_base(), "http://127.0.0.1:8787/fhir");
        assert_eq!(urls.smart_configuration(), "http://127.0.0.1:8787/fhir/.well-known/smart-configuration");
        assert_eq!(urls.openid_configuration(), "http://127.0.0.1:8787/.well-known/openid-configuration");
        assert_eq!(urls.token(), "http://127.0.0.1:8787/auth/token");
    }

    #[test]
    fn keeps_a_path_prefix_in_the_issuer() {
        let urls = ServerUrls::new("https://ehr.example.org/tenant-a", "/r4").unwrap();
        assert_eq!(urls.issuer(), "https://ehr.example.org/tenant-a");
        assert_eq!(urls.fhir_base(), "https://ehr.example.org/tenant-a/r4");
    }

    #[test]
    fn refuses_unusable_bases_and_paths() {
        for base in ["ftp://x", "not a url", "https://x/?q=1", "https://x/#f", "https://u:p@x"] {
            assert!(matches!(ServerUrls::new(base, "/fhir"), Err(UrlConfigError::BadBase(_))), "{base}");
        }
        for path in ["fhir", "/", "/fhir/", "/fh?ir", ""] {
            assert!(matches!(ServerUrls::new("https://x", path), Err(UrlConfigError::BadFhirPath(_))), "{path}");
        }
    }
}
