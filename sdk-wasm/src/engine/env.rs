//! What the SDK needs from the place it runs: the page's address, navigation, storage, HTTP,
//! randomness, signature verification, a clock and a cross-tab lock. The browser implements it
//! with web-sys (`crate::browser`); the tests with an in-memory world (the tests' `MemoryEnv`).

use super::error::SdkError;
use std::future::Future;

/// Where a value is stored: this tab only (`sessionStorage`), or every tab of the origin
/// (`localStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    Tab,
    Shared,
}

/// Where the authorization page opens (fhirclient.js's `target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The current window.
    Current,
    /// The top window (an app launched in a frame leaves it).
    Top,
    /// A new window or tab.
    Blank,
    /// A popup window.
    Popup,
    /// A named window or frame.
    Named(String),
}

impl Target {
    pub fn parse(s: Option<&str>) -> Target {
        match s.unwrap_or("_self") {
            "" | "_self" => Target::Current,
            "_top" => Target::Top,
            "_blank" => Target::Blank,
            "popup" => Target::Popup,
            "_parent" => Target::Named("_parent".into()),
            name => Target::Named(name.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>, accept: &str) -> HttpRequest {
        HttpRequest { method: "GET", url: url.into(), headers: vec![("Accept".into(), accept.into())], body: None }
    }

    pub fn form(url: impl Into<String>, pairs: &[(&str, &str)]) -> HttpRequest {
        let body = super::url::with_pairs(pairs);
        HttpRequest {
            method: "POST",
            url: url.into(),
            headers: vec![("Content-Type".into(), "application/x-www-form-urlencoded".into()), ("Accept".into(), "application/json".into())],
            body: Some(body),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// The `WWW-Authenticate` header, when there is one.
    pub www_authenticate: Option<String>,
}

/// A JWS signature check: `alg` (RS256, ES256, …), the public key as a JWK, the signing input
/// and the signature bytes.
pub struct SignatureCheck<'a> {
    pub alg: &'a str,
    pub jwk: &'a crate::json::Json,
    pub signed: &'a [u8],
    pub signature: &'a [u8],
}

#[allow(async_fn_in_trait)]
pub trait Environment {
    /// The page's full URL.
    fn location(&self) -> String;
    /// Replaces the page's URL without a navigation (the code and state leave the address bar).
    fn replace_location(&self, url: &str);
    /// Sends the browser to `url`.
    fn navigate(&self, url: &str, target: &Target) -> Result<(), SdkError>;
    fn get(&self, area: Area, key: &str) -> Option<String>;
    fn set(&self, area: Area, key: &str, value: &str);
    fn remove(&self, area: Area, key: &str);
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, SdkError>;
    fn random(&self, bytes: &mut [u8]);
    async fn verify(&self, check: SignatureCheck<'_>) -> Result<bool, SdkError>;
    /// SHA-256 of `data`.
    async fn sha256(&self, data: &[u8]) -> Result<Vec<u8>, SdkError>;
    /// Seconds since the epoch.
    fn now(&self) -> i64;
    /// Runs `task` while holding the lock `name`, shared by every tab of the origin.
    async fn exclusive<T, F: Future<Output = T>>(&self, name: &str, task: F) -> T;
}
