//! What the flow tests share: an in-memory server with three clients (a public app, a
//! confidential web app, a backend service), the sign-in half of a flow driven through the
//! grant state machine, and requests as the Worker would decode them.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::executor::block_on;
use platform::authorize::{AuthorizationRequest, Prompt};
use platform::clients::{ClientRegistration, ConsentPolicy};
use platform::grant_handle::GrantHandle;
use platform::grants::{self, AuthenticatedUser, Command, PendingAuthorization, Reply};
use platform::guard::{self, AccessGrant, BearerError};
use platform::memory::{FakeKeyGenerator, FakeSigner, FakeVerifier};
use platform::oauth::memory::MemoryAuthServer;
use platform::oauth::request::JWT_BEARER;
use platform::oauth::{token, ClientChallenge, FormPost, TokenAnswer};
use platform::ports::{GrantStore, KeyGenerator, Signer};
use platform::secret::opaque_hash;
use serde_json::{json, Value};
use smart_protocol::jose::{self, Jwk, JwsAlgorithm, JwsHeader};
use smart_protocol::pkce::CodeVerifier;
use smart_protocol::token::TokenResponse;

pub const BASE: &str = "https://ehr.example";
pub const TOKEN_URL: &str = "https://ehr.example/auth/token";
pub const REDIRECT: &str = "https://app.example/cb";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const START: i64 = 1_800_000_000;

pub fn server() -> MemoryAuthServer {
    let server = MemoryAuthServer::new(BASE, START);
    let register = |json: Value| server.clients.add(ClientRegistration::parse(&json.to_string()).unwrap().into_client().unwrap());
    let scope = "openid fhirUser profile offline_access online_access launch/patient patient/*.rs";
    register(json!({"client_id": "app", "client_name": "App", "client_type": "public", "redirect_uris": [REDIRECT], "scope": scope}));
    register(json!({"client_id": "web", "client_name": "Web", "client_type": "confidential-symmetric", "redirect_uris": [REDIRECT],
        "scope": scope, "client_secrets": ["s".repeat(40)]}));
    register(json!({"client_id": "svc", "client_name": "Service", "client_type": "backend", "scope": "system/Patient.rs system/Observation.rs",
        "jwks_uri": "https://svc.example/jwks"}));
    server
}

pub fn form(pairs: &[(&str, &str)]) -> FormPost {
    FormPost { form: Ok(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), authorization: None }
}

pub fn basic(call: FormPost, id: &str, secret: &str) -> FormPost {
    FormPost { authorization: Some(format!("Basic {}", B64.encode(format!("{id}:{secret}")))), ..call }
}

pub fn answer(server: &MemoryAuthServer, call: &FormPost) -> TokenAnswer {
    block_on(token(&server.ports(), call)).unwrap()
}

/// The token response, or a panic with the refusal.
pub fn tokens(server: &MemoryAuthServer, call: &FormPost) -> (TokenResponse, Value) {
    match answer(server, call) {
        TokenAnswer::Tokens(tokens) => {
            let body = serde_json::to_value(&tokens).unwrap();
            (*tokens, body)
        }
        refused => panic!("{refused:?}"),
    }
}

/// The refusal's `error`, `error_description` and challenge, or a panic with the tokens.
pub fn refused(server: &MemoryAuthServer, call: &FormPost) -> (String, String, Option<ClientChallenge>) {
    match answer(server, call) {
        TokenAnswer::Refused { error, challenge } => (error.error.as_str().to_owned(), error.error_description.unwrap_or_default(), challenge),
        tokens => panic!("{tokens:?}"),
    }
}

pub fn alice() -> AuthenticatedUser {
    AuthenticatedUser {
        username: "alice".into(),
        display_name: "Alice Doe".into(),
        fhir_user: "Practitioner/pr-1".into(),
        auth_time: START - 5,
        session_id: "session-1".into(),
    }
}

/// What the sign-in pages do for `client_id`: start the authorization, log alice in, pick the
/// patient when asked, consent, issue the code. Returns the code the redirect carries.
pub fn authorize(server: &MemoryAuthServer, client_id: &str, scope: &str) -> String {
    authorize_launch(server, client_id, scope, None)
}

/// [`authorize`], for an EHR launch with this context when `launch` is given.
pub fn authorize_launch(server: &MemoryAuthServer, client_id: &str, scope: &str, launch: Option<platform::launch::LaunchContext>) -> String {
    let grants = &server.grants;
    let id = grants.new_id().unwrap();
    let apply = |command: Command| block_on(grants.apply(&id, &command)).unwrap().unwrap();
    let pending = PendingAuthorization {
        request: AuthorizationRequest {
            client_id: client_id.into(),
            redirect_uri: REDIRECT.into(),
            scope: scope.into(),
            state: "st".into(),
            code_challenge: CodeVerifier::parse(VERIFIER).unwrap().s256_challenge(),
            launch: None,
            nonce: Some("n-1".into()),
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
        },
        client_name: client_id.into(),
        consent_policy: ConsentPolicy::Ask,
        allowed_scope: "launch openid fhirUser profile offline_access online_access launch/patient patient/*.rs".into(),
        launch,
        launch_user: None,
        browser_hash: "b".into(),
        public_client: matches!(client_id, "app" | "test-app"),
        csrf: "t".into(),
        created_at: server.clock_now(),
        user: None,
        patient: None,
        encounter: None,
        encounter_chosen: false,
        granted_scope: None,
    };
    apply(Command::Start { pending: Box::new(pending) });
    let b = || "b".to_owned();
    let t = || "t".to_owned();
    let Reply::Pending { step, .. } = apply(Command::Login { browser_hash: b(), csrf: t(), user: alice() }) else { panic!() };
    if step == grants::Step::PickPatient {
        apply(Command::PickPatient { browser_hash: b(), csrf: t(), patient: "p-1".into() });
    }
    apply(Command::Consent { browser_hash: b(), csrf: t(), approved: scope.into() });
    let secret = format!("code-secret-{id}");
    let Reply::CodeIssued { .. } = apply(Command::IssueCode { browser_hash: b(), code_hash: opaque_hash(&secret) }) else { panic!() };
    GrantHandle::new(id, secret).encode()
}

pub trait Now {
    fn clock_now(&self) -> i64;
}

impl Now for MemoryAuthServer {
    fn clock_now(&self) -> i64 {
        platform::ports::Clock::now(self.clock.as_ref())
    }
}

pub fn exchange(code: &str, verifier: &str) -> FormPost {
    form(&[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", verifier), ("client_id", "app")])
}

pub fn refresh(token: &str) -> FormPost {
    form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
}

/// What the resource server makes of an access token now (signature, expiry, revocation).
pub fn bearer(server: &MemoryAuthServer, access_token: &str) -> Result<AccessGrant, BearerError> {
    let ring = server.keys.0.clone();
    block_on(guard::authenticate(Some(&format!("Bearer {access_token}")), &ring, &FakeVerifier, &server.grants, &server.urls, server.clock_now()))
}

pub fn claims(token: &str) -> serde_json::Map<String, Value> {
    jose::parse_compact(token).unwrap().payload
}

pub fn service_key(kid: &str) -> Jwk {
    let generator = FakeKeyGenerator::default();
    // Distinct key material per kid.
    for _ in 0..kid.len() {
        block_on(generator.generate(JwsAlgorithm::ES384)).unwrap();
    }
    let mut key = block_on(generator.generate(JwsAlgorithm::ES384)).unwrap();
    key.kid = Some(kid.into());
    key
}

pub fn assertion(key: &Jwk, claims: Value) -> String {
    let header = JwsHeader { alg: JwsAlgorithm::ES384, typ: Some("JWT".into()), kid: key.kid.clone().unwrap() };
    let input = jose::signing_input(&header, &claims).unwrap();
    jose::compact(&input, &block_on(FakeSigner.sign(key, input.as_bytes())).unwrap())
}

pub fn backend_call(assertion: &str, scope: Option<&str>) -> FormPost {
    let mut pairs = vec![("grant_type", "client_credentials"), ("client_assertion_type", JWT_BEARER), ("client_assertion", assertion)];
    if let Some(scope) = scope {
        pairs.push(("scope", scope));
    }
    form(&pairs)
}

/// The password of the users [`add_users`] registers.
pub const USER_PASSWORD: &str = "correct horse battery";

/// Registers users (`username`, `fhirUser`), displayed as "{username} (display)".
pub fn add_users(server: &MemoryAuthServer, users: &[(&str, &str)]) {
    for (username, fhir_user) in users {
        let registration = platform::users::UserRegistration {
            username: username.to_string(),
            display_name: format!("{username} (display)"),
            fhir_user: fhir_user.to_string(),
            password: USER_PASSWORD.into(),
        };
        server.users.add(block_on(registration.into_user(&platform::memory::Pbkdf2Hasher, &platform::memory::SeededRandom::default())).unwrap());
    }
}

/// A form a page posts, from `browser`.
pub fn page_form(browser: &platform::signin::Browser, pairs: &[(&str, &str)]) -> platform::signin::PageForm {
    platform::signin::PageForm { form: Ok(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), browser: browser.clone() }
}

/// A browser signed in as `username` with the server's own login (the management page's and
/// the portal's sign-in form).
pub fn signed_in(server: &MemoryAuthServer, username: &str) -> platform::signin::Browser {
    use platform::signin::password::{self, PasswordSignIn};
    let browser = platform::signin::Browser { ip: "192.0.2.7".into(), ..Default::default() };
    let form = page_form(&browser, &[("csrf", "double-submit"), ("username", username), ("password", USER_PASSWORD)]);
    let PasswordSignIn::SignedIn { cookie } = block_on(password::sign_in(&server.signin_ports(), &form, Some("double-submit"))).unwrap() else {
        panic!("{username} could not sign in")
    };
    platform::signin::Browser { session: Some(cookie), ..browser }
}

/// The session-bound CSRF token of a signed-in browser's pages.
pub fn session_csrf(browser: &platform::signin::Browser) -> String {
    let handle = platform::accounts::SessionHandle::parse(browser.session.as_deref().expect("signed in")).expect("a session handle");
    platform::accounts::AccountState::csrf_for(&handle)
}
