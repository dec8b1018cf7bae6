//! The little URL work the SDK does, without the `url` crate (its IDNA tables would double
//! the wasm): query parameters in and out, and relative FHIR paths against the base.

/// One name or value in `application/x-www-form-urlencoded` (the WHATWG URL standard's
/// serializer: `*-._` and ASCII letters and digits stay, a space becomes `+`, every other byte
/// `%XX`). By hand rather than the `form_urlencoded` crate: that crate's tables and lossy UTF-8
/// decoding were 4 KB of the SDK's wasm; the tests compare the two.
pub fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// A name or value read back: `+` is a space, `%XX` a byte; a `%` without two hex digits stays
/// as it is. A result that is not UTF-8 is kept as it was sent (still encoded).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&c| char::from(c).to_digit(16));
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// The `name=value` pairs of a query string (without its `?`), empty pieces skipped.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

/// The query parameters of `url` (before any `#`).
pub fn params(url: &str) -> Vec<(String, String)> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    match without_fragment.split_once('?') {
        Some((_, query)) => parse_query(query),
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
    let kept: Vec<(String, String)> = parse_query(query).into_iter().filter(|(k, _)| !names.contains(&k.as_str())).collect();
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

pub fn with_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let encoded: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k.as_ref()), encode(v.as_ref()))).collect();
    encoded.join("&")
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

    /// The crate the functions replace is their oracle (natively: proptest does not build for
    /// wasm32-unknown-unknown).
    #[cfg(not(target_arch = "wasm32"))]
    mod oracle {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn encodes_as_form_urlencoded_does(text in "\\PC{0,16}") {
                prop_assert_eq!(encode(&text), form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>());
                prop_assert_eq!(decode(&encode(&text)), text);
            }

            #[test]
            fn parses_queries_as_form_urlencoded_does(query in "([a-z%+=&0-9A-F]|%[0-9A-Fa-f]{2}|%C3%A9|%FF){0,12}") {
                let theirs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                // Where the crate replaced bytes that are not UTF-8, this module keeps the text as sent.
                if theirs.iter().all(|(k, v)| !k.contains('\u{fffd}') && !v.contains('\u{fffd}')) {
                    prop_assert_eq!(parse_query(&query), theirs);
                }
            }
        }
    }

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
