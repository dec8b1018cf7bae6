//! The little URL work the SDK does, without the `url` crate (its IDNA tables would double
//! the wasm): query parameters in and out, and relative FHIR paths against the base.

/// The query parameters of `url` (before any `#`).
pub fn params(url: &str) -> Vec<(String, String)> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    match without_fragment.split_once('?') {
        Some((_, query)) => form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        None => Vec::new(),
    }
}

pub fn param(url: &str, name: &str) -> Option<String> {
    params(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// `url` without the named query parameters (the fragment is kept).
pub fn without(url: &str, names: &[&str]) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (path, query) = before_fragment.split_once('?').unwrap_or((before_fragment, ""));
    let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().filter(|(k, _)| !names.contains(&k.as_str())).collect();
    let mut out = path.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&with_pairs(&kept));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

pub fn with_pairs(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `endpoint?pairs`, keeping a query the endpoint already has.
pub fn with_query(endpoint: &str, pairs: &[(String, String)]) -> String {
    let joiner = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{joiner}{}", with_pairs(pairs))
}

pub fn is_absolute(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// A FHIR path (`Patient/1`, `/Observation?code=x`) against the base; absolute URLs as they are.
pub fn resolve(base: &str, url: &str) -> String {
    if is_absolute(url) {
        return url.to_owned();
    }
    format!("{}/{}", base.trim_end_matches('/'), url.trim_start_matches('/'))
}

/// The `Type/id` at the end of a reference or an absolute `fhirUser` URL.
pub fn type_and_id(reference: &str) -> Option<(String, String)> {
    let mut parts = reference.trim_end_matches('/').rsplit('/');
    let id = parts.next()?;
    let t = parts.next()?;
    (!id.is_empty() && t.starts_with(|c: char| c.is_ascii_uppercase())).then(|| (t.to_owned(), id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_in_and_out() {
        let u = "https://app.example/cb?code=a%20b&state=s&x=1#frag";
        assert_eq!(param(u, "code").as_deref(), Some("a b"));
        assert_eq!(without(u, &["code", "state"]), "https://app.example/cb?x=1#frag");
        assert_eq!(without("https://a/cb?code=1&state=2", &["code", "state"]), "https://a/cb");
        assert_eq!(with_query("https://as/authorize", &[("a".into(), "b c".into())]), "https://as/authorize?a=b+c");
        assert_eq!(with_query("https://as/authorize?tenant=1", &[("a".into(), "b".into())]), "https://as/authorize?tenant=1&a=b");
    }

    #[test]
    fn fhir_paths_and_references() {
        assert_eq!(resolve("https://f/fhir/", "/Patient/1"), "https://f/fhir/Patient/1");
        assert_eq!(resolve("https://f/fhir", "https://other/x"), "https://other/x");
        assert_eq!(type_and_id("https://f/fhir/Practitioner/abc"), Some(("Practitioner".into(), "abc".into())));
        assert_eq!(type_and_id("Patient/p1"), Some(("Patient".into(), "p1".into())));
        assert_eq!(type_and_id("nothing"), None);
    }
}
