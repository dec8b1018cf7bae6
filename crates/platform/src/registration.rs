//! Dynamic client registration: RFC 7591 (`POST /auth/register`) and RFC 7592 (read, replace
//! and delete at `registration_client_uri`, `/auth/register/{client_id}`).
//!
//! The request's metadata becomes a [`ClientRegistration`], so a registered client passes the
//! very checks an administrator's does (exact redirect URIs, https except loopback, the scope
//! rules of [`crate::scope_policy`], keys for `private_key_jwt`), and it gets the defaults of
//! an admin-registered client of its kind and no more: consent asked every time, default
//! token lifetimes, no introspection of other clients' tokens.
//!
//! Who may register what:
//! - a public client (authorization code + PKCE, `token_endpoint_auth_method: none`): anyone,
//!   when the `open_registration` setting is on; otherwise with an initial access token;
//! - a confidential (`client_secret_*`, `private_key_jwt`) or backend (`client_credentials`)
//!   client: only with an initial access token.
//!
//! An initial access token (RFC 7591 §3) is the `ADMIN_TOKEN` secret, or the token whose hash
//! the `registration_token_hash` setting holds. A bad one is refused (401 `invalid_token`)
//! even where none is needed.
//!
//! The server chooses `client_id`, a `client_secret` for the `client_secret_*` methods (shown
//! once, stored hashed) and the registration access token (stored hashed; echoed back on
//! reads and updates, since the client just presented it). An update may not change the kind
//! of client: an openly registered public client cannot become confidential.

use crate::admin::{self, AdminAuth};
use crate::clients::{hash_secret, Client, ClientError, ClientRegistration, ClientType, DynamicRegistration};
use crate::ports::{ClientRegistry, ClientStore, Clock, Random, Settings, StoreError};
use crate::secret::{hash_matches, opaque_hash, random_secret, Secret};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use smart_protocol::error::bearer_challenge;
use smart_protocol::registration::{
    ClientInformation, ClientMetadataRequest, INVALID_CLIENT_METADATA, INVALID_REDIRECT_URI, INVALID_SOFTWARE_STATEMENT, UNAPPROVED_SOFTWARE_STATEMENT,
};
use smart_protocol::{OAuthError, OAuthErrorCode, ServerUrls};
use subtle::ConstantTimeEq;

/// The realm of the registration endpoints' bearer challenges.
pub const REALM: &str = "smart-edge registration";

/// The scopes a client that names none is registered with (RFC 7591 §2 lets the server
/// choose): a read-only patient app with OpenID Connect.
pub const DEFAULT_SCOPE: &str = "openid fhirUser launch launch/patient offline_access patient/*.rs";

/// Largest registration request read, in bytes.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

pub struct RegistrationPorts<'a> {
    pub urls: &'a ServerUrls,
    pub clients: &'a dyn ClientRegistry,
    pub store: &'a dyn ClientStore,
    pub settings: &'a dyn Settings,
    pub random: &'a dyn Random,
    pub clock: &'a dyn Clock,
    /// The `ADMIN_TOKEN` secret, accepted as an initial access token.
    pub admin_token: Option<&'a str>,
    /// The per-client limit of the client configuration endpoint, asked only once the
    /// registration access token is verified (a stranger naming a client uses up nothing).
    pub client_limits: &'a dyn crate::ports::ClientLimits,
}

/// What to answer.
#[derive(Debug)]
pub enum RegistrationAnswer {
    /// 201 after a registration, 200 after a read or an update.
    Client { status: u16, information: Box<ClientInformation> },
    /// 204 after a deletion.
    Deleted,
    /// The error body, its status, and the `WWW-Authenticate` challenge when due.
    Refused { status: u16, error: OAuthError, challenge: Option<String> },
    /// The client is over its per-client limit: 429 after `retry_after` seconds.
    Limited { retry_after: u32 },
}

impl RegistrationAnswer {
    fn metadata_error(code: &str, description: impl Into<String>) -> Self {
        Self::Refused { status: 400, error: OAuthError::new(OAuthErrorCode::Extension(code.to_owned()), description), challenge: None }
    }

    /// 401 (RFC 6750 §3.1): the challenge names the error only when a token was presented.
    fn unauthorized(presented: bool, description: &str) -> Self {
        let error = OAuthError::new(OAuthErrorCode::InvalidToken, description);
        let challenge = bearer_challenge(REALM, presented.then_some(&error));
        Self::Refused { status: 401, error, challenge: Some(challenge) }
    }

    fn from_client_error(error: ClientError) -> Self {
        match error {
            ClientError::BadRedirectUri(_) => Self::metadata_error(INVALID_REDIRECT_URI, error.to_string()),
            other => Self::metadata_error(INVALID_CLIENT_METADATA, other.to_string()),
        }
    }
}

/// The body as the Worker read it: the text, or why there is none.
pub type Body = Result<String, &'static str>;

/// `POST /auth/register` (RFC 7591 §3).
pub async fn register(ports: &RegistrationPorts<'_>, authorization: Option<&str>, body: Body) -> Result<RegistrationAnswer, StoreError> {
    let settings = ports.settings.settings().await?;
    let presented = authorization.and_then(admin::bearer_token);
    let authorized = match presented {
        None => false,
        Some(token) if initial_access_token_valid(token, ports.admin_token, settings.registration_token_hash.as_deref()) => true,
        Some(_) => return Ok(RegistrationAnswer::unauthorized(true, "the initial access token is not valid")),
    };
    let request = match read(body) {
        Ok(request) => request,
        Err(refusal) => return Ok(*refusal),
    };
    let client_id = B64URL.encode(random_bytes::<16>(ports.random)?);
    let mut registration = match to_registration(client_id, &request) {
        Ok(registration) => registration,
        Err(refusal) => return Ok(*refusal),
    };
    let client_type = match registration.resolve_type() {
        Ok(client_type) => client_type,
        Err(e) => return Ok(RegistrationAnswer::from_client_error(e)),
    };
    if !authorized {
        if client_type != ClientType::Public {
            return Ok(RegistrationAnswer::unauthorized(false, "an initial access token is required to register a confidential or backend client"));
        }
        if !settings.open_registration {
            return Ok(RegistrationAnswer::unauthorized(false, "open registration is off: an initial access token is required"));
        }
    }
    let secret = if client_type == ClientType::ConfidentialSymmetric { Some(random_secret(ports.random).map_err(crypto)?) } else { None };
    registration.client_secret = secret.clone().map(Secret::from);
    let mut client = match registration.into_client() {
        Ok(client) => client,
        Err(e) => return Ok(RegistrationAnswer::from_client_error(e)),
    };
    let token = random_secret(ports.random).map_err(crypto)?;
    client.registration = Some(DynamicRegistration { token_hash: opaque_hash(&token), issued_at: ports.clock.now(), open: !authorized });
    ports.store.save(&client).await?;
    let mut information = information(ports.urls, &client, token);
    information.client_secret = secret;
    Ok(RegistrationAnswer::Client { status: 201, information: Box::new(information) })
}

/// `GET /auth/register/{client_id}` (RFC 7592 §2.1).
pub async fn read_client(ports: &RegistrationPorts<'_>, client_id: &str, authorization: Option<&str>) -> Result<RegistrationAnswer, StoreError> {
    Ok(match authenticate(ports, client_id, authorization).await? {
        Ok((client, token)) => RegistrationAnswer::Client { status: 200, information: Box::new(information(ports.urls, &client, token.to_owned())) },
        Err(refusal) => refusal,
    })
}

/// `DELETE /auth/register/{client_id}` (RFC 7592 §2.3): 204, and the client is gone (its
/// refresh tokens and assertions are refused from then on, as for a client an admin deletes).
pub async fn delete_client(ports: &RegistrationPorts<'_>, client_id: &str, authorization: Option<&str>) -> Result<RegistrationAnswer, StoreError> {
    Ok(match authenticate(ports, client_id, authorization).await? {
        Ok((client, _)) => {
            ports.store.delete(&client.client_id).await?;
            RegistrationAnswer::Deleted
        }
        Err(refusal) => refusal,
    })
}

/// `PUT /auth/register/{client_id}` (RFC 7592 §2.2): the metadata replaces the registration
/// (omitted fields are removed); the client id, its kind, its secret and its registration
/// access token stay.
pub async fn update_client(ports: &RegistrationPorts<'_>, client_id: &str, authorization: Option<&str>, body: Body) -> Result<RegistrationAnswer, StoreError> {
    let (current, token) = match authenticate(ports, client_id, authorization).await? {
        Ok(found) => found,
        Err(refusal) => return Ok(refusal),
    };
    let request = match read(body) {
        Ok(request) => request,
        Err(refusal) => return Ok(*refusal),
    };
    if request.client_id.as_deref() != Some(client_id) {
        return Ok(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, "client_id is required and must be this client's (RFC 7592 §2.2)"));
    }
    if let Some(secret) = &request.client_secret {
        if !current.secret_matches(secret) {
            return Ok(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, "client_secret is not this client's secret"));
        }
    }
    let mut registration = match to_registration(client_id.to_owned(), &request) {
        Ok(registration) => registration,
        Err(refusal) => return Ok(*refusal),
    };
    match registration.resolve_type() {
        Ok(kind) if kind == current.client_type => {}
        Ok(_) => {
            return Ok(RegistrationAnswer::metadata_error(
                INVALID_CLIENT_METADATA,
                "the kind of client (token_endpoint_auth_method, grant_types) cannot change: register a new client",
            ))
        }
        Err(e) => return Ok(RegistrationAnswer::from_client_error(e)),
    }
    if current.client_type == ClientType::ConfidentialSymmetric {
        // A stand-in so that the checks pass; the stored secret hashes are kept below.
        registration.client_secret = Some(Secret::from(random_secret(ports.random).map_err(crypto)?));
    }
    let mut client = match registration.into_client() {
        Ok(client) => client,
        Err(e) => return Ok(RegistrationAnswer::from_client_error(e)),
    };
    client.secret_hashes = current.secret_hashes.clone();
    client.registration = current.registration.clone();
    ports.store.save(&client).await?;
    Ok(RegistrationAnswer::Client { status: 200, information: Box::new(information(ports.urls, &client, token.to_owned())) })
}

/// The registered client whose registration access token was presented, and that token; or
/// 401 `invalid_token` (RFC 7592 §2.1: also for a client that does not exist); or 429 when
/// that client is over its limit, counted only here, after the token was verified.
async fn authenticate<'t>(
    ports: &RegistrationPorts<'_>,
    client_id: &str,
    authorization: Option<&'t str>,
) -> Result<Result<(Client, &'t str), RegistrationAnswer>, StoreError> {
    let Some(token) = authorization.and_then(admin::bearer_token) else {
        return Ok(Err(RegistrationAnswer::unauthorized(false, "the registration access token is required")));
    };
    let client = ports.clients.client(client_id).await?;
    let valid = client.as_ref().and_then(|c| c.registration.as_ref()).is_some_and(|r| hash_matches(&r.token_hash, token));
    let Some(client) = client.filter(|_| valid) else {
        return Ok(Err(RegistrationAnswer::unauthorized(true, "the registration access token is not valid for this client")));
    };
    Ok(match ports.client_limits.over_limit(client_id).await? {
        Some(retry_after) => Err(RegistrationAnswer::Limited { retry_after }),
        None => Ok((client, token)),
    })
}

fn initial_access_token_valid(token: &str, admin_token: Option<&str>, hash: Option<&str>) -> bool {
    let admin = admin::check(Some(&format!("Bearer {token}")), admin_token) == AdminAuth::Granted;
    let configured = hash.is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(hash_secret(token).as_bytes())));
    admin | configured
}

fn read(body: Body) -> Result<ClientMetadataRequest, Box<RegistrationAnswer>> {
    let text = body.map_err(|why| Box::new(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, why)))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Box::new(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, format!("the body is not JSON: {e}"))))?;
    if !value.is_object() {
        return Err(Box::new(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, "the body must be a JSON object of client metadata")));
    }
    let request: ClientMetadataRequest =
        serde_json::from_value(value).map_err(|e| Box::new(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, format!("client metadata: {e}"))))?;
    if let Some(statement) = &request.software_statement {
        // No software statement issuer is trusted here (RFC 7591 §2.3, §3.2.2).
        let jws_shaped = statement.split('.').count() == 3 && statement.split('.').all(|part| !part.is_empty() && B64URL.decode(part).is_ok());
        let code = if jws_shaped { UNAPPROVED_SOFTWARE_STATEMENT } else { INVALID_SOFTWARE_STATEMENT };
        return Err(Box::new(RegistrationAnswer::metadata_error(code, "software statements are not accepted by this server")));
    }
    Ok(request)
}

/// The request as the client registry's input, with this server's defaults.
fn to_registration(client_id: String, request: &ClientMetadataRequest) -> Result<ClientRegistration, Box<RegistrationAnswer>> {
    let redirect_uris = request.redirect_uris.clone().unwrap_or_default();
    let backend = request.grant_types.as_ref().is_some_and(|g| g.iter().any(|g| g == "client_credentials"));
    if !backend && redirect_uris.is_empty() {
        return Err(Box::new(RegistrationAnswer::metadata_error(INVALID_REDIRECT_URI, "redirect_uris is required for the authorization_code grant")));
    }
    let scope = match (&request.scope, backend) {
        (Some(scope), _) => scope.clone(),
        (None, false) => DEFAULT_SCOPE.to_owned(),
        (None, true) => {
            return Err(Box::new(RegistrationAnswer::metadata_error(INVALID_CLIENT_METADATA, "a backend client names its system/ scopes in scope")))
        }
    };
    Ok(ClientRegistration {
        client_name: request.client_name.clone().unwrap_or_else(|| client_id.clone()),
        client_id,
        client_type: None,
        token_endpoint_auth_method: request.token_endpoint_auth_method.clone(),
        grant_types: request.grant_types.clone(),
        response_types: request.response_types.clone(),
        redirect_uris,
        scope,
        contacts: request.contacts.clone().unwrap_or_default(),
        logo_uri: request.logo_uri.clone(),
        client_uri: request.client_uri.clone(),
        policy_uri: request.policy_uri.clone(),
        tos_uri: request.tos_uri.clone(),
        client_secret: None,
        launch_uri: request.launch_uri.clone(),
        jwks: request.jwks.clone(),
        jwks_uri: request.jwks_uri.clone(),
        client_secrets: Vec::new(),
        access_token_lifetime: crate::clients::DEFAULT_ACCESS_LIFETIME,
        refresh_token_lifetime: crate::clients::DEFAULT_REFRESH_LIFETIME,
        ..ClientRegistration::default()
    })
}

/// RFC 7591 §3.2.1 / RFC 7592 §3 for a stored client (without its secret, which is hashed).
pub fn information(urls: &ServerUrls, client: &Client, registration_access_token: String) -> ClientInformation {
    let metadata = &client.metadata;
    ClientInformation {
        client_id: client.client_id.clone(),
        client_secret: None,
        client_id_issued_at: client.registration.as_ref().map_or(0, |r| r.issued_at),
        client_secret_expires_at: (!client.secret_hashes.is_empty()).then_some(0),
        registration_access_token,
        registration_client_uri: urls.registration_client(&client.client_id),
        client_name: client.client_name.clone(),
        redirect_uris: client.redirect_uris.clone(),
        token_endpoint_auth_method: metadata.token_endpoint_auth_method.clone().unwrap_or_default(),
        grant_types: metadata.grant_types.clone(),
        response_types: metadata.response_types.clone(),
        scope: client.scope.clone(),
        jwks: client.jwks.clone(),
        jwks_uri: client.jwks_uri.clone(),
        launch_uri: client.launch_uri.clone(),
        contacts: metadata.contacts.clone(),
        logo_uri: metadata.logo_uri.clone(),
        client_uri: metadata.client_uri.clone(),
        policy_uri: metadata.policy_uri.clone(),
        tos_uri: metadata.tos_uri.clone(),
    }
}

fn random_bytes<const N: usize>(random: &dyn Random) -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    random.fill(&mut bytes).map_err(crypto)?;
    Ok(bytes)
}

fn crypto(e: crate::ports::CryptoError) -> StoreError {
    StoreError(format!("randomness failed: {e}"))
}
