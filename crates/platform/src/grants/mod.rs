//! One authorization grant, from the authorization request to the code (and, with the token
//! endpoint, to its tokens). It lives in one Durable Object per grant, addressed by the id
//! that starts the sign-in URL, the code and the refresh tokens, so every step on it is strictly ordered:
//! a code is issued once, consumed once, and a second use is seen.
//!
//! [`apply`] is the whole state machine, pure: the Durable Object loads the record, applies a
//! [`Command`], stores the result and answers the [`Reply`]. Each stage of a grant has its
//! own module: [`pending`] (the sign-in, up to the code), [`code`] (the code and its
//! exchange), [`refresh`] (the refresh-token chain of an active grant); this one holds the
//! record, the commands and replies, the dispatch, and when a record may be tidied or deleted.

mod code;
mod pending;
mod refresh;
#[cfg(test)]
mod test_support;

pub use code::{AuthorizationGrant, CODE_LIFETIME_SECS};
pub use pending::{may_pick_patient, next_action, Action, PendingAuthorization, Step, SIGN_IN_LIFETIME_SECS};
pub use refresh::{bound_to_session, wants_refresh, RefreshState, REFRESH_GRACE_SECS};

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The longest access-token lifetime a client may register (`clients`: 60 to 86,400 s).
pub const MAX_ACCESS_TOKEN_SECS: i64 = 86_400;

/// The user the grant is for, as the login established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedUser {
    pub username: String,
    pub display_name: String,
    pub fhir_user: String,
    /// When the user actually typed their password (OpenID Connect `auth_time`).
    pub auth_time: i64,
    pub session_id: String,
}

impl AuthenticatedUser {
    pub fn patient_id(&self) -> Option<&str> {
        self.fhir_user.strip_prefix("Patient/")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GrantRecord {
    /// The user is signing in (stored as `interaction`, its name before).
    #[serde(rename = "interaction")]
    Pending(PendingAuthorization),
    CodeIssued {
        code_hash: String,
        expires_at: i64,
        grant: AuthorizationGrant,
    },
    /// The code was exchanged: tokens are out. A second exchange of the same code (its hash
    /// is kept) is a replay and revokes it; any other code is only refused.
    Active {
        grant: AuthorizationGrant,
        issued_at: i64,
        refresh: Option<RefreshState>,
        #[serde(default)]
        code_hash: Option<String>,
    },
    /// A backend service's access token (`client_creds`), so that it can be revoked.
    Backend {
        client_id: String,
        expires_at: i64,
    },
    /// The user said no, or the grant was revoked (replayed code, reused refresh token,
    /// revocation request, session ended).
    Closed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Start {
        #[serde(rename = "interaction")]
        pending: Box<PendingAuthorization>,
    },
    View {
        browser_hash: String,
    },
    /// The user typed their password (the form's CSRF token is checked).
    Login {
        browser_hash: String,
        csrf: String,
        user: AuthenticatedUser,
    },
    /// A still-valid session of this browser logged the user in.
    AdoptSession {
        browser_hash: String,
        user: AuthenticatedUser,
    },
    PickPatient {
        browser_hash: String,
        csrf: String,
        patient: String,
    },
    PickEncounter {
        browser_hash: String,
        csrf: String,
        encounter: Option<String>,
    },
    Consent {
        browser_hash: String,
        csrf: String,
        approved: String,
    },
    /// Consent decided by policy (pre-approved client, or a remembered consent).
    AutoConsent {
        browser_hash: String,
    },
    Deny {
        browser_hash: String,
        csrf: String,
    },
    IssueCode {
        browser_hash: String,
        code_hash: String,
    },
    /// The token endpoint's `authorization_code` grant. `refresh_secret` is a fresh secret the
    /// grant keeps (hashed) if its scopes allow a refresh token.
    Exchange {
        code_hash: String,
        client_id: String,
        redirect_uri: Option<String>,
        code_verifier: Secret,
        refresh_secret: Secret,
        refresh_lifetime: i64,
    },
    /// The `refresh_token` grant, with the next secret of the chain and the narrower `scope`
    /// asked for, if any (checked before anything rotates).
    Refresh {
        presented_hash: String,
        client_id: Option<String>,
        next_secret: Secret,
        grace_secs: i64,
        #[serde(default)]
        scope: Option<String>,
    },
    /// Records a backend service's access token (a fresh grant id), until it expires.
    StartBackend {
        client_id: String,
        expires_at: i64,
    },
    /// Ends the grant (revocation, session end).
    Revoke {
        reason: String,
    },
    /// The active grant, for introspection and the resource server.
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The authorization is still pending, at `step` (`interaction` on the wire, its name
    /// before).
    #[serde(rename = "interaction")]
    Pending {
        #[serde(rename = "interaction")]
        pending: Box<PendingAuthorization>,
        step: Step,
    },
    CodeIssued {
        redirect_uri: String,
        state: String,
    },
    Denied {
        redirect_uri: String,
        state: String,
    },
    /// Tokens with `scope` may be issued for `grant`; `refresh_token` is the secret to hand
    /// out, if any.
    Tokens {
        grant: Box<AuthorizationGrant>,
        scope: String,
        refresh_token: Option<Secret>,
    },
    Active {
        grant: Box<AuthorizationGrant>,
        refresh_hash: Option<String>,
        /// When the current refresh token expires (with `refresh_hash`).
        #[serde(default)]
        refresh_expires_at: Option<i64>,
    },
    /// A backend service's token, still valid and not revoked.
    BackendActive {
        client_id: String,
    },
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum GrantError {
    #[error("this sign-in request does not exist or has finished")]
    NotFound,
    #[error("this sign-in request has expired; go back to the application and start again")]
    Expired,
    #[error("this sign-in request was started in another browser")]
    WrongBrowser,
    #[error("the form has expired or was not sent by this page; reload and try again")]
    BadCsrf,
    #[error("this step is not the current one")]
    WrongStep,
    #[error("the request already exists")]
    AlreadyExists,
    /// The token endpoint's `invalid_grant` (RFC 6749 §5.2), with the reason.
    #[error("{reason}")]
    InvalidGrant { reason: String },
    #[error("the grant is not active")]
    Inactive,
    /// A refresh without client authentication for a confidential client's grant.
    #[error("this client must authenticate")]
    ClientMustAuthenticate,
    /// The token endpoint's `invalid_scope`.
    #[error("{reason}")]
    InvalidScope { reason: String },
    /// The EHR made this launch for another user.
    #[error("this launch was made for another user; sign in as that user, or open the app again from the EHR")]
    NotLaunchUser,
    /// A patient user and a launch about another patient.
    #[error("a patient can only open their own record")]
    OtherPatient,
}

impl GrantRecord {
    /// When the record next needs tidying: the end of a refresh grace window (its clear-text
    /// copy of the current token is then dropped).
    pub fn next_cleanup(&self) -> Option<i64> {
        match self {
            GrantRecord::Active { refresh: Some(chain), .. } if chain.grace_secret.is_some() => Some(chain.grace_end()),
            _ => None,
        }
    }

    /// When nothing in the record can matter any more, so that its storage may be deleted (a
    /// missing record answers exactly as a closed one: inactive, `invalid_grant`, not found):
    /// a closed grant at once; an unfinished sign-in, an unused code or a backend token
    /// when it expires; an active grant when its refresh chain and the access tokens it gave
    /// (at most [`MAX_ACCESS_TOKEN_SECS`] after the last issue) have expired.
    pub fn deletable_at(&self) -> i64 {
        match self {
            GrantRecord::Closed { .. } => 0,
            GrantRecord::Pending(i) => i.created_at + SIGN_IN_LIFETIME_SECS,
            GrantRecord::CodeIssued { expires_at, .. } | GrantRecord::Backend { expires_at, .. } => *expires_at,
            GrantRecord::Active { issued_at, refresh, .. } => match refresh {
                Some(chain) => chain.expires_at.max(chain.rotated_at + MAX_ACCESS_TOKEN_SECS),
                None => issued_at + MAX_ACCESS_TOKEN_SECS,
            },
        }
    }

    /// When the object should wake up next: the earlier of a cleanup and the deletion.
    pub fn next_alarm(&self) -> i64 {
        self.next_cleanup().map_or(self.deletable_at(), |at| at.min(self.deletable_at()))
    }

    /// Drops what is kept only for a while (the grace copy of a refresh token).
    pub fn cleanup(&mut self, now: i64) {
        if let GrantRecord::Active { refresh: Some(chain), .. } = self {
            if now >= chain.grace_end() {
                chain.grace_secret = None;
            }
        }
    }
}

/// Applies `command` to the stored record (`None` when the grant is new). On success returns
/// the record to store and the reply; on error nothing changes.
///
/// Knowing a grant id (it starts every code and refresh token) proves nothing: only a
/// presented code or refresh token whose hash matches the stored one may change an issued
/// grant, revocation on replay included.
pub fn apply(record: Option<GrantRecord>, command: Command, now: i64) -> Result<(GrantRecord, Reply), GrantError> {
    match (record, command) {
        (None, Command::Start { pending }) => {
            let reply = pending::pending_reply(&pending);
            Ok((GrantRecord::Pending(*pending), reply))
        }
        (None, Command::StartBackend { client_id, expires_at }) => {
            let reply = Reply::BackendActive { client_id: client_id.clone() };
            Ok((GrantRecord::Backend { client_id, expires_at }, reply))
        }
        (Some(_), Command::Start { .. } | Command::StartBackend { .. }) => Err(GrantError::AlreadyExists),
        (Some(_), Command::Revoke { reason }) => Ok((GrantRecord::Closed { reason }, Reply::Revoked)),
        (Some(GrantRecord::Pending(pending)), command) => pending::apply(pending, command, now),
        (
            Some(GrantRecord::CodeIssued { code_hash, expires_at, grant }),
            Command::Exchange { code_hash: presented, client_id, redirect_uri, code_verifier, refresh_secret, refresh_lifetime },
        ) => {
            let presented = code::Presented { code_hash: presented, client_id, redirect_uri, code_verifier, refresh_secret, refresh_lifetime };
            code::exchange(code_hash, expires_at, grant, presented, now)
        }
        (Some(GrantRecord::Active { code_hash, .. }), Command::Exchange { code_hash: presented, .. }) => code::exchange_again(code_hash.as_deref(), &presented),
        (
            Some(GrantRecord::Active { grant, issued_at, refresh, code_hash }),
            Command::Refresh { presented_hash, client_id, next_secret, grace_secs, scope },
        ) => {
            let presented = refresh::Presented { hash: presented_hash, client_id, next_secret, grace_secs, scope };
            refresh::redeem(grant, issued_at, refresh, code_hash, presented, now)
        }
        (Some(GrantRecord::Active { grant, issued_at, refresh, code_hash }), Command::Status) => {
            let live = refresh.as_ref().filter(|r| now < r.expires_at);
            let reply = Reply::Active {
                grant: Box::new(grant.clone()),
                refresh_hash: live.map(|r| r.current_hash.clone()),
                refresh_expires_at: live.map(|r| r.expires_at),
            };
            Ok((GrantRecord::Active { grant, issued_at, refresh, code_hash }, reply))
        }
        (Some(GrantRecord::Backend { client_id, expires_at }), Command::Status) if now < expires_at => {
            let reply = Reply::BackendActive { client_id: client_id.clone() };
            Ok((GrantRecord::Backend { client_id, expires_at }, reply))
        }
        (Some(GrantRecord::Closed { .. }), Command::Exchange { .. } | Command::Refresh { .. }) => Err(invalid_grant("the grant has been revoked")),
        (Some(GrantRecord::CodeIssued { .. } | GrantRecord::Backend { .. }), Command::Refresh { .. }) => Err(invalid_grant("the refresh token is not valid")),
        (Some(GrantRecord::Backend { .. }), Command::Exchange { .. }) => Err(invalid_grant("the code is not valid")),
        (_, Command::Status) => Err(GrantError::Inactive),
        _ => Err(GrantError::NotFound),
    }
}

fn invalid_grant(reason: &str) -> GrantError {
    GrantError::InvalidGrant { reason: reason.to_owned() }
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::launch::LaunchContext;

    #[test]
    fn knowing_the_grant_id_revokes_nothing() {
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        // `{grant id}.anything` as a code: refused, the grant stays active.
        let mut bogus = exchange(VERIFIER, "https://app.example/cb");
        if let Command::Exchange { code_hash, .. } = &mut bogus {
            *code_hash = crate::secret::opaque_hash("anything");
        }
        assert!(matches!(apply(Some(active.clone()), bogus, 11), Err(GrantError::InvalidGrant { .. })));
        // ... and as a refresh token, even once the chain has expired.
        assert!(matches!(apply(Some(active.clone()), refresh_cmd("anything", "x", 30, None), 11), Err(GrantError::InvalidGrant { .. })));
        assert!(matches!(apply(Some(active.clone()), refresh_cmd("anything", "x", 30, None), 10 + 1000), Err(GrantError::InvalidGrant { .. })));
        assert!(matches!(apply(Some(active.clone()), Command::Status, 12), Ok((_, Reply::Active { .. }))));
        // The real code again is the replay that revokes.
        assert_eq!(apply(Some(active), exchange(VERIFIER, "https://app.example/cb"), 12).unwrap().1, Reply::Revoked);
    }

    #[test]
    fn debug_never_shows_a_verifier_or_a_refresh_secret() {
        let text = format!("{:?}", exchange(VERIFIER, "https://app.example/cb"));
        assert!(!text.contains(VERIFIER) && text.contains("[redacted]"), "{text}");
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        let (rotated, reply) = apply(Some(active), refresh_cmd("r1", "next-s3cret", 30, None), 100).unwrap();
        let text = format!("{rotated:?} {reply:?} {:?}", refresh_cmd("r1", "next-s3cret", 30, None));
        assert!(!text.contains("next-s3cret"), "{text}");
    }

    #[test]
    fn a_backend_token_is_a_grant_that_can_be_revoked_and_expires() {
        let (record, reply) = apply(None, Command::StartBackend { client_id: "svc".into(), expires_at: 300 }, 0).unwrap();
        assert_eq!(reply, Reply::BackendActive { client_id: "svc".into() });
        assert_eq!(apply(Some(record.clone()), Command::Status, 299).unwrap().1, Reply::BackendActive { client_id: "svc".into() });
        assert_eq!(apply(Some(record.clone()), Command::Status, 300).unwrap_err(), GrantError::Inactive);
        assert!(matches!(apply(Some(record.clone()), refresh_cmd("x", "y", 30, None), 1), Err(GrantError::InvalidGrant { .. })));
        let (revoked, _) = apply(Some(record), Command::Revoke { reason: "by the client".into() }, 1).unwrap();
        assert_eq!(apply(Some(revoked), Command::Status, 2).unwrap_err(), GrantError::Inactive);
    }

    #[test]
    fn a_record_is_deletable_only_when_nothing_in_it_can_matter() {
        let (record, _) = apply(None, Command::Start { pending: Box::new(pending("openid", None)) }, 0).unwrap();
        assert_eq!(record.deletable_at(), SIGN_IN_LIFETIME_SECS);
        let (active, _) = apply(Some(with_challenge(issued("openid offline_access"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        assert_eq!(active.deletable_at(), (10 + 1000).max(10 + MAX_ACCESS_TOKEN_SECS), "the last access token may live a day");
        let (rotated, _) = apply(Some(active), refresh_cmd("r1", "r2", 30, None), 500).unwrap();
        assert_eq!(rotated.deletable_at(), 500 + MAX_ACCESS_TOKEN_SECS);
        assert_eq!(rotated.next_alarm(), 530, "the grace cleanup comes first");
        let (no_refresh, _) = apply(Some(with_challenge(issued("openid"))), exchange(VERIFIER, "https://app.example/cb"), 10).unwrap();
        assert_eq!(no_refresh.deletable_at(), 10 + MAX_ACCESS_TOKEN_SECS);
        let (backend, _) = apply(None, Command::StartBackend { client_id: "svc".into(), expires_at: 300 }, 0).unwrap();
        assert_eq!(backend.deletable_at(), 300);
        let (closed, _) = apply(Some(backend), Command::Revoke { reason: "x".into() }, 1).unwrap();
        assert_eq!(closed.deletable_at(), 0);
        // A deleted record answers as the closed one did.
        assert_eq!(apply(None, Command::Status, 2).unwrap_err(), GrantError::Inactive);
        assert!(matches!(apply(None, refresh_cmd("r2", "r3", 30, None), 2), Err(GrantError::NotFound)));
        assert!(matches!(apply(None, exchange(VERIFIER, "https://app.example/cb"), 2), Err(GrantError::NotFound)));
    }

    /// A pending record as the Durable Objects stored it (and a `Start` command and its reply
    /// as they crossed to and from the object) before the split into modules and the renames:
    /// every wire name stays, so records in storage and objects of the previous version still
    /// read.
    const STORED_PENDING: &str = r#"{"state":"interaction","request":{"client_id":"app","redirect_uri":"https://app.example/cb","scope":"launch openid patient/*.rs","state":"st","code_challenge":"ccccccccccccccccccccccccccccccccccccccccccc","launch":null,"nonce":"n","prompt":{"none":false,"login":false,"consent":false}},"client_name":"App","consent_policy":"ask","allowed_scope":"launch launch/patient launch/encounter openid fhirUser offline_access online_access patient/*.rs","launch":{"patient":"p9"},"launch_user":"u","browser_hash":"b","public_client":true,"csrf":"t","created_at":0,"user":{"username":"u","display_name":"U","fhir_user":"Practitioner/1","auth_time":5,"session_id":"s"},"patient":null,"encounter":null,"encounter_chosen":false,"granted_scope":null}"#;

    #[test]
    fn a_pending_record_stored_before_the_renames_still_reads() {
        let ctx = LaunchContext { patient: Some("p9".into()), ..LaunchContext::default() };
        let mut expected = pending("launch openid patient/*.rs", Some(ctx));
        expected.user = Some(user());
        expected.launch_user = Some("u".into());
        let record: GrantRecord = serde_json::from_str(STORED_PENDING).unwrap();
        assert_eq!(record, GrantRecord::Pending(expected.clone()));
        assert_eq!(serde_json::to_string(&record).unwrap(), STORED_PENDING, "written as before");
        // The command that starts it and the reply, in their old form, both ways.
        let pending_json = STORED_PENDING.replacen(r#""state":"interaction","#, "", 1);
        let old_command = format!(r#"{{"command":"start","interaction":{pending_json}}}"#);
        let command: Command = serde_json::from_str(&old_command).unwrap();
        assert_eq!(command, Command::Start { pending: Box::new(expected.clone()) });
        assert_eq!(serde_json::to_string(&command).unwrap(), old_command);
        let old_reply = format!(r#"{{"reply":"interaction","interaction":{pending_json},"step":"consent"}}"#);
        let reply: Reply = serde_json::from_str(&old_reply).unwrap();
        assert_eq!(reply, Reply::Pending { pending: Box::new(expected), step: Step::Consent });
        assert_eq!(serde_json::to_string(&reply).unwrap(), old_reply);
    }
}
