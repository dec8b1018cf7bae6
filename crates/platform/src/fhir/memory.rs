//! The in-memory [`Partitions`] adapter: the same contract as the Worker's Durable Objects
//! (versions, tombstones, history, the directory that never re-points), with search run by
//! [`search::matches`] instead of SQL. Native tests of the FHIR use cases run over it.

use super::search::{self, Search};
use super::store::{CompartmentPage, HistoryPage, Page, Partitions, ReadOutcome, ReadStatus, SearchResult, Version, WriteOutcome, Written};
use crate::ports::StoreError;
use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Stored {
    version: i64,
    last_updated: String,
    deleted: bool,
    content: Value,
}

/// (Type, id) → versions, oldest first.
type Partition = BTreeMap<(String, String), Vec<Stored>>;

/// Partition name → its resources.
#[derive(Debug, Default)]
pub struct MemoryPartitions {
    data: RefCell<BTreeMap<String, Partition>>,
    directory: RefCell<BTreeMap<(String, String), String>>,
    clock: RefCell<i64>,
    /// Calls per partition (the tests prove a patient-scoped request touches one).
    pub calls: RefCell<BTreeMap<String, usize>>,
    /// Partitions whose writes fail (the tests force a transaction to fail half-way).
    pub failing: RefCell<std::collections::BTreeSet<String>>,
}

fn raw(value: &Value) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(value.to_string()).map_err(|e| StoreError(e.to_string()))
}

fn key(resource: &Value) -> (String, String) {
    let text = |k: &str| resource.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("resourceType"), text("id"))
}

impl MemoryPartitions {
    fn touch(&self, partition: &str) {
        *self.calls.borrow_mut().entry(partition.to_owned()).or_default() += 1;
    }

    fn now(&self) -> String {
        let mut clock = self.clock.borrow_mut();
        *clock += 1;
        format!("2026-01-01T00:{:02}:{:02}.{:03}Z", (*clock / 60000) % 60, (*clock / 1000) % 60, *clock % 1000)
    }

    fn current(&self, partition: &str, resource_type: &str, id: &str) -> Option<Stored> {
        self.data.borrow().get(partition)?.get(&(resource_type.to_owned(), id.to_owned()))?.last().cloned()
    }

    fn store(&self, partition: &str, mut resource: Value, deleted: bool, last_updated: &str) -> Written {
        let k = key(&resource);
        let previous = self.current(partition, &k.0, &k.1);
        let version = previous.as_ref().map_or(1, |p| p.version + 1);
        let meta = resource.as_object_mut().map(|o| o.entry("meta").or_insert_with(|| Value::Object(Default::default())));
        if let Some(Value::Object(meta)) = meta {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
        }
        let stored = Stored { version, last_updated: last_updated.to_owned(), deleted, content: resource };
        self.data.borrow_mut().entry(partition.to_owned()).or_default().entry(k.clone()).or_default().push(stored);
        Written { reference: format!("{}/{}", k.0, k.1), version, created: previous.is_none_or(|p| p.deleted), last_updated: last_updated.to_owned() }
    }
}

#[async_trait(?Send)]
impl Partitions for MemoryPartitions {
    async fn write(&self, partition: &str, resources: Vec<Value>, if_match: Option<i64>) -> Result<WriteOutcome, StoreError> {
        self.touch(partition);
        if self.failing.borrow().contains(partition) {
            return Err(StoreError(format!("{partition} is failing (forced by a test)")));
        }
        if let (Some(expected), [single]) = (if_match, resources.as_slice()) {
            let (t, id) = key(single);
            let current = self.current(partition, &t, &id).filter(|c| !c.deleted).map(|c| c.version);
            if current != Some(expected) {
                return Ok(WriteOutcome { conflict: true, current, written: Vec::new(), content: None });
            }
        }
        let now = self.now();
        let single = resources.len() == 1;
        let mut written = Vec::new();
        for resource in resources {
            written.push(self.store(partition, resource, false, &now));
        }
        let content = match (single, written.first()) {
            (true, Some(w)) => {
                let (t, id) = w.reference.split_once('/').unwrap_or_default();
                self.current(partition, t, id).map(|c| raw(&c.content)).transpose()?
            }
            _ => None,
        };
        Ok(WriteOutcome { conflict: false, current: None, written, content })
    }

    async fn read(&self, partition: &str, resource_type: &str, id: &str, version: Option<i64>) -> Result<ReadOutcome, StoreError> {
        self.touch(partition);
        let data = self.data.borrow();
        let versions = data.get(partition).and_then(|p| p.get(&(resource_type.to_owned(), id.to_owned())));
        let found = match version {
            Some(v) => versions.and_then(|vs| vs.iter().find(|s| s.version == v)),
            None => versions.and_then(|vs| vs.last()),
        };
        Ok(match found {
            None => ReadOutcome { status: ReadStatus::Missing, content: None, version: 0, last_updated: String::new() },
            Some(s) if s.deleted => ReadOutcome { status: ReadStatus::Gone, content: None, version: s.version, last_updated: s.last_updated.clone() },
            Some(s) => ReadOutcome { status: ReadStatus::Found, content: Some(raw(&s.content)?), version: s.version, last_updated: s.last_updated.clone() },
        })
    }

    async fn history(&self, partition: &str, resource_type: &str, id: Option<&str>, page: &Page) -> Result<HistoryPage, StoreError> {
        self.touch(partition);
        let data = self.data.borrow();
        let Some(p) = data.get(partition) else { return Ok(HistoryPage::default()) };
        let since = |s: &Stored| page.since.as_ref().is_none_or(|since| s.last_updated >= *since);
        let mut versions: Vec<(&str, &Stored)> = p
            .iter()
            .filter(|((t, i), _)| t == resource_type && id.is_none_or(|id| id == i))
            .flat_map(|((_, i), vs)| vs.iter().map(move |v| (i.as_str(), v)))
            .filter(|(_, s)| since(s))
            .collect();
        // The Durable Object's order: newest first, then by id, then newest version first.
        versions.sort_by(|(ia, a), (ib, b)| b.last_updated.cmp(&a.last_updated).then(ia.cmp(ib)).then(b.version.cmp(&a.version)));
        let total = versions.len() as i64;
        let versions = versions
            .into_iter()
            .skip(page.offset)
            .take(page.count)
            .map(|(_, s)| Ok(Version { version: s.version, last_updated: s.last_updated.clone(), deleted: s.deleted, content: raw(&s.content)? }))
            .collect::<Result<_, StoreError>>()?;
        Ok(HistoryPage { versions, total })
    }

    async fn compartment(&self, partition: &str, types: &[String], page: &Page) -> Result<CompartmentPage, StoreError> {
        self.touch(partition);
        let data = self.data.borrow();
        let Some(p) = data.get(partition) else { return Ok(CompartmentPage::default()) };
        let mut current: Vec<(&(String, String), &Stored)> = p
            .iter()
            .filter(|((t, _), _)| types.contains(t))
            .filter_map(|(k, vs)| vs.last().filter(|s| !s.deleted).map(|s| (k, s)))
            .filter(|(_, s)| page.since.as_ref().is_none_or(|since| s.last_updated >= *since))
            .collect();
        current.sort_by_key(|((t, id), _)| (t != "Patient", t.clone(), id.clone()));
        let total = current.len() as i64;
        let resources = current
            .into_iter()
            .skip(page.offset)
            .take(page.count)
            .map(|((t, id), s)| Ok((t.clone(), id.clone(), raw(&s.content)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(CompartmentPage { resources, total })
    }

    async fn delete(&self, partition: &str, resource_type: &str, id: &str) -> Result<Option<i64>, StoreError> {
        self.touch(partition);
        match self.current(partition, resource_type, id) {
            Some(s) if !s.deleted => {
                let now = self.now();
                Ok(Some(self.store(partition, s.content, true, &now).version))
            }
            _ => Ok(None),
        }
    }

    async fn search(&self, partition: &str, query: &Search) -> Result<SearchResult, StoreError> {
        self.touch(partition);
        // As the SQL: chains or `_has` left unresolved match nothing (fail closed).
        if query.unresolved() {
            return Ok(SearchResult::default());
        }
        let data = self.data.borrow();
        let mut hits: Vec<(String, &Value)> = data
            .get(partition)
            .into_iter()
            .flat_map(|p| p.iter())
            .filter_map(|((t, id), vs)| vs.last().filter(|s| t == &query.resource_type && !s.deleted).map(|s| (id.clone(), &s.content)))
            .filter(|(id, _)| query.more.after_id.as_ref().is_none_or(|after| id > after))
            .filter(|(_, content)| {
                let rows = search::index(content);
                search::matches(&rows, &query.clauses) && (query.filters.is_empty() || query.filters.iter().any(|g| search::matches(&rows, g)))
            })
            .collect();
        hits.sort_by(|a, b| search::order(query, (&search::sort_key(query, &a.0, a.1), &a.0), (&search::sort_key(query, &b.0, b.1), &b.0)));
        let total = hits.len() as i64;
        let resources = hits.into_iter().skip(query.offset).take(query.count).map(|(id, c)| Ok((id, raw(c)?))).collect::<Result<_, StoreError>>()?;
        Ok(SearchResult { resources, total })
    }

    async fn locate(&self, keys: &[(String, String)]) -> Result<Vec<Option<String>>, StoreError> {
        self.touch(super::store::DIRECTORY);
        let directory = self.directory.borrow();
        Ok(keys.iter().map(|k| directory.get(k).cloned()).collect())
    }

    async fn revert(&self, partition: &str, written: Vec<Written>) -> Result<(), StoreError> {
        self.touch(partition);
        let mut data = self.data.borrow_mut();
        let Some(stored) = data.get_mut(partition) else { return Ok(()) };
        for w in written {
            let Some((t, id)) = w.reference.split_once('/') else { continue };
            let k = (t.to_owned(), id.to_owned());
            let Some(versions) = stored.get_mut(&k) else { continue };
            if versions.last().is_some_and(|v| v.version == w.version) {
                versions.pop();
                if versions.is_empty() {
                    stored.remove(&k);
                }
            }
        }
        Ok(())
    }

    async fn register(&self, entries: Vec<(String, String, String)>) -> Result<(), StoreError> {
        self.touch(super::store::DIRECTORY);
        let mut directory = self.directory.borrow_mut();
        for (t, id, partition) in entries {
            directory.entry((t, id)).or_insert(partition);
        }
        Ok(())
    }

    async fn types_in(&self, partition: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.touch(partition);
        let data = self.data.borrow();
        let mut types: Vec<String> =
            data.get(partition).into_iter().flatten().filter(|(_, vs)| vs.last().is_some_and(|s| !s.deleted)).map(|((t, _), _)| t.clone()).collect();
        types.dedup();
        Ok(Some(types))
    }
}
