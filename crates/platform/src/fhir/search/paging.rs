//! Ordering and paging: sort keys for merging partitions, the searchset's links.

use super::super::params::{self, Kind};
use super::index::index;
use super::query::Search;
use serde_json::Value;

/// The sort key of a resource for `search` (merging pages from several partitions, and the
/// in-memory store): per sort parameter, its least value (`None` without one).
pub type SortKey = Vec<Option<String>>;

pub fn sort_key(search: &Search, id: &str, resource: &Value) -> SortKey {
    if search.sort.is_none() {
        return Vec::new();
    }
    let rows = index(resource);
    search
        .sort_keys()
        .map(|(field, _)| match sort_column(search, field) {
            None => Some(id.to_owned()),
            Some(column) => rows
                .iter()
                .filter(|r| &r.name == field)
                .filter_map(|r| match column {
                    "i.text" => r.text.clone(),
                    "i.code" => r.code.clone(),
                    _ => r.date_lo.clone(),
                })
                .min(),
        })
        .collect()
}

/// The `idx` column a sort parameter orders by (`None` for `_id`, which is the row's id):
/// strings by their lower-cased text, tokens by code, dates by their earliest instant.
pub(super) fn sort_column(search: &Search, field: &str) -> Option<&'static str> {
    if field == "_id" {
        return None;
    }
    Some(match params::find(&search.resource_type, field).map(|p| p.kind) {
        Some(Kind::String) => "i.text",
        Some(Kind::Token) => "i.code",
        _ => "i.date_lo",
    })
}

/// The order of two results as the SQL of [`to_sql`](super::to_sql) sorts them: key by key
/// (each ascending or descending; a missing value first when ascending, as in SQLite), ties by
/// id ascending.
pub fn order(search: &Search, a: (&SortKey, &str), b: (&SortKey, &str)) -> std::cmp::Ordering {
    for (i, (_, desc)) in search.sort_keys().enumerate() {
        let (x, y) = (a.0.get(i), b.0.get(i));
        let by_key = if *desc { y.cmp(&x) } else { x.cmp(&y) };
        if by_key != std::cmp::Ordering::Equal {
            return by_key;
        }
    }
    a.1.cmp(b.1)
}

/// The searchset Bundle's `self`, `next` and `previous` links (R4 §3.1.1.5.1): the query as
/// given, with `_count` and `_offset` set for each page; `next` when there are more matches.
pub fn links(url_base: &str, pairs: &[(String, String)], search: &Search, has_next: bool) -> Vec<(&'static str, String)> {
    let page = |offset: usize| {
        let mut query: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != "_count" && k != "_offset").cloned().collect();
        query.push(("_count".into(), search.count.to_string()));
        query.push(("_offset".into(), offset.to_string()));
        format!("{url_base}?{}", serde_urlencoded::to_string(&query).unwrap_or_default())
    };
    let mut links = vec![("self", page(search.offset))];
    if has_next && search.count > 0 {
        links.push(("next", page(search.offset + search.count)));
    }
    if search.offset > 0 {
        links.push(("previous", page(search.offset.saturating_sub(search.count))));
    }
    links
}
