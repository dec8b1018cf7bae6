//! The signed-in client: FHIR requests with the access token (relative paths against the FHIR
//! base, `next` links followed), refresh before expiry and once after a 401, one refresh at a
//! time across the tabs of the origin, and logout that revokes (RFC 7009).

use super::env::{Area, Environment, HttpRequest};
use super::error::SdkError;
use super::ready::{store, token_request};
use super::state::{load, Session, CURRENT};
use super::url;
use crate::json::Json;

/// Refresh when the access token has less than this many seconds left.
const REFRESH_MARGIN: i64 = 30;

/// How `request()` pages (fhirclient.js's `fhirOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Pages to fetch: 1 = only the first, 0 = all.
    pub page_limit: usize,
    /// Answer the resources of every page's entries as one array.
    pub flat: bool,
}

impl Default for Paging {
    fn default() -> Self {
        Paging { page_limit: 1, flat: false }
    }
}

/// A FHIR request as data: method, path or URL, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirCall {
    pub method: &'static str,
    pub url: String,
    pub body: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl FhirCall {
    pub fn get(url: impl Into<String>) -> FhirCall {
        FhirCall { method: "GET", url: url.into(), body: None, headers: Vec::new() }
    }
}

pub struct Client<'e, E: Environment> {
    pub env: &'e E,
    pub session: Session,
}

impl<'e, E: Environment> Client<'e, E> {
    pub fn new(env: &'e E, session: Session) -> Self {
        Client { env, session }
    }

    pub fn patient_id(&self) -> Option<&str> {
        self.session.patient.as_deref()
    }

    pub fn encounter_id(&self) -> Option<&str> {
        self.session.encounter.as_deref()
    }

    /// `(resourceType, id)` of the user (`fhirUser` of the verified ID token).
    pub fn user(&self) -> Option<(String, String)> {
        self.session.fhir_user.as_deref().and_then(url::type_and_id)
    }

    fn expiring(&self) -> bool {
        self.session.expires_at.is_some_and(|at| at - REFRESH_MARGIN <= self.env.now())
    }

    /// Refreshes the access token, one tab at a time: a tab that waited for the lock and finds
    /// a token newer than its own adopts it instead of refreshing again.
    pub async fn refresh(&mut self) -> Result<(), SdkError> {
        let key = self.session.key();
        let before = self.session.access_token.clone();
        let env = self.env;
        let outcome = env
            .exclusive(&format!("smart-edge-refresh:{key}"), async {
                if let Some(latest) = load::<Session>(env, Area::Shared, &key) {
                    if latest.access_token != before {
                        return Ok(latest);
                    }
                }
                let Some(refresh_token) = self.session.refresh_token.clone() else {
                    return Err(SdkError::new("no_refresh_token", "the session has no refresh token (ask for offline_access or online_access)"));
                };
                let request = HttpRequest::form(
                    &self.session.endpoints.token,
                    &[("grant_type", "refresh_token"), ("refresh_token", &refresh_token), ("client_id", &self.session.client_id)],
                );
                let (tokens, _) = token_request(env, request).await?;
                let mut next = self.session.clone();
                next.access_token = tokens.access_token;
                // A server that does not rotate keeps the old refresh token valid.
                next.refresh_token = tokens.refresh_token.or(Some(refresh_token));
                next.expires_at = tokens.expires_in.map(|s| env.now() + s);
                if let Some(scope) = tokens.scope {
                    next.scope = scope;
                }
                // The launch context stays what the launch gave unless the refresh restates it.
                next.patient = tokens.context.patient.or(next.patient);
                next.encounter = tokens.context.encounter.or(next.encounter);
                store(env, &next);
                Ok(next)
            })
            .await?;
        self.session = outcome;
        self.env.set(Area::Tab, CURRENT, &key);
        Ok(())
    }

    async fn send(&self, call: &FhirCall, url: &str) -> Result<super::env::HttpResponse, SdkError> {
        let mut headers =
            vec![("Authorization".to_owned(), format!("Bearer {}", self.session.access_token)), ("Accept".to_owned(), "application/fhir+json".to_owned())];
        if call.body.is_some() {
            headers.push(("Content-Type".to_owned(), "application/fhir+json".to_owned()));
        }
        headers.extend(call.headers.iter().cloned());
        self.env.fetch(HttpRequest { method: call.method, url: url.to_owned(), headers, body: call.body.clone() }).await
    }

    /// One request, refreshed before when the token is about to expire, and retried once
    /// after a refresh when the server answers 401. The body as sent.
    async fn once(&mut self, call: &FhirCall, url: &str) -> Result<String, SdkError> {
        let can_refresh = self.session.refresh_token.is_some();
        if can_refresh && self.expiring() {
            self.refresh().await?;
        }
        let mut res = self.send(call, url).await?;
        if res.status == 401 && can_refresh {
            self.refresh().await?;
            res = self.send(call, url).await?;
        }
        if !(200..300).contains(&res.status) {
            return Err(SdkError::from_response(res.status, &res.body, url));
        }
        Ok(if res.body.trim().is_empty() { "null".to_owned() } else { res.body })
    }

    /// `client.request(urlOrRequest, { pageLimit, flat })`: the JSON answer (a Bundle, an
    /// array of Bundles when several pages were fetched, or with `flat` an array of the
    /// entries' resources), passed through as the server sent it.
    pub async fn request(&mut self, call: FhirCall, paging: Paging) -> Result<String, SdkError> {
        let mut url = url::resolve(&self.session.server_url, &call.url);
        // Each page is parsed once, for its `next` link and (with `flat`) its entries.
        let mut pages: Vec<(String, Option<Result<Json, crate::json::Error>>)> = Vec::new();
        loop {
            let page = self.once(&call, &url).await?;
            let parsed = (call.method == "GET" || paging.flat).then(|| Json::parse(&page));
            let next = if call.method == "GET" { parsed.as_ref().and_then(|p| p.as_ref().ok()).and_then(next_link) } else { None };
            pages.push((page, parsed));
            match next {
                Some(next) if paging.page_limit == 0 || pages.len() < paging.page_limit => url = next,
                _ => break,
            }
        }
        if paging.flat {
            let mut resources = Vec::new();
            for (_, parsed) in &pages {
                let parsed = match parsed {
                    Some(Ok(parsed)) => parsed,
                    Some(Err(e)) => return Err(SdkError::new("invalid_response", format!("{url}: {e}"))),
                    None => continue,
                };
                let entries = parsed.get("entry").and_then(Json::as_array).unwrap_or_default();
                resources.extend(entries.iter().filter_map(|e| e.get("resource")).map(Json::to_string));
            }
            return Ok(format!("[{}]", resources.join(",")));
        }
        let mut pages: Vec<String> = pages.into_iter().map(|(page, _)| page).collect();
        Ok(if pages.len() == 1 { pages.pop().unwrap_or_default() } else { format!("[{}]", pages.join(",")) })
    }

    /// Revokes the refresh and the access token where the server advertises revocation, then
    /// forgets the session (even when the server cannot be reached).
    pub async fn logout(&mut self) -> Result<(), SdkError> {
        let mut failure = None;
        if let Some(endpoint) = self.session.endpoints.revoke.clone() {
            let tokens = [(self.session.refresh_token.clone(), "refresh_token"), (Some(self.session.access_token.clone()), "access_token")];
            for (token, hint) in tokens {
                let Some(token) = token else { continue };
                let request = HttpRequest::form(&endpoint, &[("token", &token), ("token_type_hint", hint), ("client_id", &self.session.client_id)]);
                match self.env.fetch(request).await {
                    Ok(res) if res.status == 200 => {}
                    Ok(res) => failure = Some(SdkError::from_response(res.status, &res.body, "the revocation endpoint")),
                    Err(e) => failure = Some(e),
                }
            }
        }
        self.env.remove(Area::Shared, &self.session.key());
        if self.env.get(Area::Tab, CURRENT).as_deref() == Some(self.session.key().as_str()) {
            self.env.remove(Area::Tab, CURRENT);
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The absolute `next` link of a Bundle.
fn next_link(page: &Json) -> Option<String> {
    let links = page.get("link").and_then(Json::as_array)?;
    let next = links.iter().find(|l| l.get("relation").and_then(Json::as_str) == Some("next"))?;
    next.get("url").and_then(Json::as_str).filter(|u| url::is_absolute(u)).map(str::to_owned)
}

/// `patient.request(path)`: a search of the patient's compartment gets `patient={id}`.
pub fn in_patient_compartment(path: &str, patient: &str) -> String {
    let (resource, query) = path.trim_start_matches('/').split_once('?').unwrap_or((path.trim_start_matches('/'), ""));
    if url::is_absolute(path)
        || resource.contains('/')
        || resource == "Patient"
        || url::params(&format!("?{query}")).iter().any(|(k, _)| k == "patient" || k == "subject")
    {
        return path.to_owned();
    }
    let joiner = if query.is_empty() { "" } else { "&" };
    format!("{resource}?{query}{joiner}patient={}", url::encode(patient))
}

#[cfg(test)]
mod tests {
    use super::in_patient_compartment;

    #[test]
    fn patient_requests_stay_in_the_compartment() {
        assert_eq!(in_patient_compartment("Observation?code=x", "p1"), "Observation?code=x&patient=p1");
        assert_eq!(in_patient_compartment("Observation", "p1"), "Observation?patient=p1");
        assert_eq!(in_patient_compartment("Observation?subject=Patient/p2", "p1"), "Observation?subject=Patient/p2");
        assert_eq!(in_patient_compartment("Observation/o1", "p1"), "Observation/o1");
    }
}
