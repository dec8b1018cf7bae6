//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3; `private_key_jwt`, RFC 7523 §2.2 and §3). Every refusal is `invalid_client`.

use super::request::{self, ClientAuth};
use super::{refusal, Checked, Failure, OAuthPorts, Stop};
use crate::assertions;
use crate::clients::Client;
use smart_protocol::{OAuthError, OAuthErrorCode};

/// Loads and authenticates the client `auth` names; a `private_key_jwt` assertion may name
/// the token URL or `endpoint` (the introspection or revocation URL) as its audience.
pub async fn authenticate(ports: &OAuthPorts<'_>, auth: &ClientAuth, endpoint: Option<&str>) -> Result<Result<Client, OAuthError>, Failure> {
    match authenticated(ports, auth, endpoint).await {
        Ok(client) => Ok(Ok(client)),
        Err(Stop::Refuse(e)) => Ok(Err(e)),
        Err(Stop::Fail(failure)) => Err(failure),
        // Introspection and revocation count no per-client limit.
        Err(Stop::Limited(_)) => Err(Failure::Unexpected("a client limit outside the token endpoint".into())),
    }
}

/// The token endpoint's per-client rate limit, for a client that has just authenticated.
/// Public clients are not counted per client: anyone can name one, so its limit would be
/// anyone's to use up (the per-address limit covers them).
pub(super) async fn within_limit(ports: &OAuthPorts<'_>, client: &Client) -> Checked<()> {
    if client.client_type == crate::clients::ClientType::Public {
        return Ok(());
    }
    match ports.client_limits.over_limit(&client.client_id).await? {
        Some(retry_after) => Err(Stop::Limited(retry_after)),
        None => Ok(()),
    }
}

pub(super) async fn authenticated(ports: &OAuthPorts<'_>, auth: &ClientAuth, endpoint: Option<&str>) -> Checked<Client> {
    let (client, accepted) = authenticated_unrecorded(ports, auth, endpoint).await?;
    if let Some(accepted) = accepted {
        if !ports.assertions.record(&client.client_id, &accepted.jti, accepted.exp).await? {
            return Err(replayed());
        }
    }
    Ok(client)
}

/// [`authenticated`] without recording the assertion's `jti`: the caller records it (and
/// refuses a replay with [`replayed`]) in the same step as its own write (`client_credentials`).
pub(super) async fn authenticated_unrecorded(
    ports: &OAuthPorts<'_>,
    auth: &ClientAuth,
    endpoint: Option<&str>,
) -> Checked<(Client, Option<assertions::Accepted>)> {
    let client_id = named_client(auth)?;
    let client = ports.clients.client(&client_id).await?;
    request::authenticate(client.as_ref(), auth)?;
    let Some(client) = client else { return Err(refusal(OAuthErrorCode::InvalidClient, "unknown client")) };
    let accepted = match auth {
        ClientAuth::Assertion { assertion, .. } => Some(verified_assertion(ports, &client, assertion, endpoint).await?),
        _ => None,
    };
    Ok((client, accepted))
}

/// The refusal of an assertion whose `jti` was used before.
pub(super) fn replayed() -> Stop {
    refusal(OAuthErrorCode::InvalidClient, "this client_assertion (jti) was already used")
}

/// The client id the request names; RFC 7523 §3: an assertion's `iss` when `client_id` is
/// absent.
fn named_client(auth: &ClientAuth) -> Result<String, OAuthError> {
    match auth {
        ClientAuth::Assertion { client_id: None, assertion } => assertions::claimed_client(assertion),
        _ => auth.client_id().map(str::to_owned).ok_or_else(|| OAuthError::new(OAuthErrorCode::InvalidClient, "client_id is required")),
    }
}

/// `private_key_jwt`: the client's registered keys (fetched again for an unknown `kid`, or when
/// an assertion without `kid` verifies with none of them), the signature and claims. Its `jti`
/// is the caller's to record.
async fn verified_assertion(ports: &OAuthPorts<'_>, client: &Client, assertion: &str, endpoint: Option<&str>) -> Checked<assertions::Accepted> {
    let unreadable = |e: crate::ports::KeysUnavailable| refusal(OAuthErrorCode::InvalidClient, &format!("the client's keys could not be read: {e}"));
    let mut keys = ports.client_keys.keys(client, false).await.map_err(unreadable)?;
    let refetched = !assertions::has_key(assertion, &keys);
    if refetched {
        keys = ports.client_keys.keys(client, true).await.map_err(unreadable)?;
    }
    let token_url = ports.urls.token();
    let audiences: Vec<&str> = std::iter::once(token_url.as_str()).chain(endpoint).collect();
    let mut verdict = assertions::verify(assertion, &client.client_id, &keys, &audiences, ports.verifier, ports.clock.now()).await?;
    // Without `kid` no cached key set can say whether the client rotated: when none of its keys
    // verifies, the set is fetched again (at most every ten seconds) and tried once more.
    if verdict.is_err() && !refetched && assertions::names_no_key(assertion) {
        keys = ports.client_keys.keys(client, true).await.map_err(unreadable)?;
        verdict = assertions::verify(assertion, &client.client_id, &keys, &audiences, ports.verifier, ports.clock.now()).await?;
    }
    Ok(verdict?)
}
