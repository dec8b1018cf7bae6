//! Ordering and paging: sort keys for merging partitions, the searchset's links.

use super::super::params::{self, Kind};
use super::index::index;
use super::query::Search;
use serde_json::Value;

/// The sort key of a resource for `search` (merging pages from several partitions): the
/// earliest value of the sort parameter, or the id.
pub fn sort_key(search: &Search, id: &str, resource: &Value) -> String {
    match &search.sort {
        Some((field, _)) if field != "_id" => {
            let text = sorts_as_text(search, field);
            index(resource).into_iter().filter(|r| &r.name == field).filter_map(|r| if text { r.text } else { r.date_lo }).min().unwrap_or_default()
        }
        _ => id.to_owned(),
    }
}

/// Whether the sort parameter is a string one (sorted by its lower-cased text; dates by their
/// earliest instant).
pub(super) fn sorts_as_text(search: &Search, field: &str) -> bool {
    params::find(&search.resource_type, field).is_some_and(|p| p.kind == Kind::String)
}

/// The order of two results as the SQL of [`to_sql`] sorts them: by the sort key (descending
/// for `-param`), ties by id ascending (`_sort=-_id` is by id descending).
pub fn order(search: &Search, a: (&str, &str), b: (&str, &str)) -> std::cmp::Ordering {
    let by_key = if descending(search) { b.0.cmp(a.0) } else { a.0.cmp(b.0) };
    by_key.then_with(|| a.1.cmp(b.1))
}

/// Whether the merged order is descending.
pub fn descending(search: &Search) -> bool {
    search.sort.as_ref().is_some_and(|(_, desc)| *desc)
}

/// The searchset Bundle's `self`, `next` and `previous` links (R4 §3.1.1.5.1): the query as
/// given, with `_count` and `_offset` set for each page.
pub fn links(url_base: &str, pairs: &[(String, String)], search: &Search, total: i64) -> Vec<(&'static str, String)> {
    let page = |offset: usize| {
        let mut query: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != "_count" && k != "_offset").cloned().collect();
        query.push(("_count".into(), search.count.to_string()));
        query.push(("_offset".into(), offset.to_string()));
        format!("{url_base}?{}", serde_urlencoded::to_string(&query).unwrap_or_default())
    };
    let mut links = vec![("self", page(search.offset))];
    if (search.offset.saturating_add(search.count) as i64) < total && search.count > 0 {
        links.push(("next", page(search.offset + search.count)));
    }
    if search.offset > 0 {
        links.push(("previous", page(search.offset.saturating_sub(search.count))));
    }
    links
}
