//! The background work of an export, one batch at a time: list the patients (from the
//! directory, a page per call), then read each partition type by type in pages, through the
//! one gate for that partition, and append the resources to the type's NDJSON file.
//!
//! The export reads the current version of each resource whose `meta.lastUpdated` is at most
//! the transaction time (and at least `_since`). Both compare at whole seconds (the search
//! index's precision): `_since` is inclusive of its second, so a client that passes the last
//! manifest's `transactionTime` misses nothing (it may see a resource again).

use super::{is_patient_data, Job, JobState, OutputFile, TypePlan, CALLS_PER_BATCH, EXPORT_PERMISSION, FILE_MAX_BYTES, FILE_MAX_RESOURCES, PAGE, PATIENT_PAGE};
use crate::fhir::gate::{self, Filter, Place};
use crate::fhir::search::{self, Clause, Search, SearchError};
use crate::fhir::store::{patient_partition, Partitions, DIRECTORY};
use crate::ports::StoreError;

/// Bytes of NDJSON one batch collects at most (the job's object holds them in memory).
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Lines for one output file, to append to what it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub file: usize,
    /// Whole lines, each ending in `\n`.
    pub ndjson: String,
    pub count: usize,
}

/// The search of `plan`'s type in a partition whose gate filter is `filter`: the time window,
/// the `_typeFilter` queries (any of them) and the gate's clause groups (any of them), both
/// at once. `None` when the filter admits nothing.
pub fn search_for(job: &Job, plan: &TypePlan, filter: &Filter) -> Result<Option<Search>, SearchError> {
    let t = plan.resource_type.as_str();
    let mut window = vec![("_lastUpdated".to_owned(), format!("le{}", job.transaction_time))];
    if let Some(since) = &job.since {
        window.push(("_lastUpdated".to_owned(), format!("ge{since}")));
    }
    let mut query = search::parse(t, &window, true)?;
    let type_groups: Vec<Vec<Clause>> = plan.filters.iter().map(|pairs| search::parse(t, pairs, true).map(|s| s.clauses)).collect::<Result<_, _>>()?;
    query.filters = match filter {
        Filter::AnyOf(groups) if groups.is_empty() => return Ok(None),
        Filter::All => type_groups,
        Filter::AnyOf(groups) if type_groups.is_empty() => groups.clone(),
        Filter::AnyOf(groups) => groups.iter().flat_map(|g| type_groups.iter().map(move |t| [g.clone(), t.clone()].concat())).collect(),
    };
    query.count = PAGE;
    Ok(Some(query))
}

/// The indexes of the job's types a partition can hold (and holds, when the store said).
fn types_in(job: &Job, partition: &str) -> Vec<usize> {
    let shared_type = partition.strip_prefix("shared/");
    let present = job.cursor.present.as_ref();
    (0..job.types.len())
        .filter(|i| {
            let t = job.types[*i].resource_type.as_str();
            let fits = match shared_type {
                Some(s) => s == t,
                None => is_patient_data(t),
            };
            fits && present.is_none_or(|p| p.iter().any(|x| x == t))
        })
        .collect()
}

/// The file the next `bytes` of `resource_type` go to (a new one when the last is full).
fn file_for(files: &mut Vec<OutputFile>, resource_type: &str, bytes: usize) -> usize {
    let open = files.iter().rposition(|f| f.resource_type == resource_type).filter(|i| {
        let f = &files[*i];
        f.count < FILE_MAX_RESOURCES && f.bytes + bytes <= FILE_MAX_BYTES
    });
    let index = open.unwrap_or_else(|| {
        files.push(OutputFile { resource_type: resource_type.to_owned(), count: 0, bytes: 0 });
        files.len() - 1
    });
    files[index].count += 1;
    files[index].bytes += bytes;
    index
}

/// Runs one batch of `job` (at most [`CALLS_PER_BATCH`] store calls): the lines to append,
/// file by file. The job's cursor and files advance; its state becomes `Done` after the last
/// partition. A store error leaves the job as it was before the batch (the caller retries).
pub async fn run_batch(store: &dyn Partitions, job: &mut Job) -> Result<Vec<Piece>, StoreError> {
    let mut work = job.clone();
    let grant = work.grant();
    let mut pieces: Vec<Piece> = Vec::new();
    let (mut calls, mut bytes) = (0, 0);
    while calls < CALLS_PER_BATCH && bytes < BATCH_BYTES && work.state == JobState::Running {
        let cursor = &mut work.cursor;
        let Some(partition) = cursor.partitions.front().cloned() else {
            match cursor.directory_offset {
                Some(offset) => {
                    let mut list = search::parse("Patient", &[], false).map_err(|e| StoreError(e.to_string()))?;
                    (list.count, list.offset) = (PATIENT_PAGE, offset);
                    let found = store.search(DIRECTORY, &list).await?;
                    calls += 1;
                    if offset == 0 {
                        cursor.partitions_known += usize::try_from(found.total).unwrap_or_default();
                    }
                    cursor.directory_offset = (found.resources.len() == PATIENT_PAGE).then_some(offset + PATIENT_PAGE);
                    cursor.partitions.extend(found.resources.iter().map(|(id, _)| patient_partition(id)));
                }
                None => work.state = JobState::Done,
            }
            continue;
        };
        if !work.cursor.asked_types {
            // Which types the partition holds: one call instead of one search per type.
            work.cursor.present = store.types_in(&partition).await?;
            work.cursor.asked_types = true;
            calls += 1;
        }
        let types = types_in(&work, &partition);
        let Some(&type_index) = types.get(work.cursor.type_index) else {
            let cursor = &mut work.cursor;
            cursor.partitions.pop_front();
            cursor.partitions_done += 1;
            (cursor.type_index, cursor.offset, cursor.present, cursor.asked_types) = (0, 0, None, false);
            continue;
        };
        let plan = work.types[type_index].clone();
        let t = plan.resource_type.as_str();
        // The gate, for this type in this partition (the job's scopes, as at kick-off).
        let filter = gate::usable(&grant, t, EXPORT_PERMISSION).ok().and_then(|u| gate::at(&u, &grant, EXPORT_PERMISSION, Place::of_partition(&partition)));
        let query = match filter.map(|f| search_for(&work, &plan, &f)) {
            Some(Ok(Some(query))) => Some(query),
            Some(Err(e)) => return Err(StoreError(e.to_string())),
            _ => None,
        };
        let Some(mut query) = query else {
            (work.cursor.type_index, work.cursor.offset) = (work.cursor.type_index + 1, 0);
            continue;
        };
        query.offset = work.cursor.offset;
        let found = store.search(&partition, &query).await?;
        calls += 1;
        let full = found.resources.len() == PAGE;
        for (_, resource) in found.resources {
            let mut line = resource.get().to_owned();
            if line.contains('\n') {
                // NDJSON: one resource per line, whatever whitespace the store kept.
                line = serde_json::from_str::<serde_json::Value>(&line).map_err(|e| StoreError(e.to_string()))?.to_string();
            }
            line.push('\n');
            bytes += line.len();
            let file = file_for(&mut work.files, t, line.len());
            match pieces.last_mut() {
                Some(piece) if piece.file == file => {
                    piece.ndjson.push_str(&line);
                    piece.count += 1;
                }
                _ => pieces.push(Piece { file, ndjson: line, count: 1 }),
            }
        }
        let cursor = &mut work.cursor;
        if full {
            cursor.offset += PAGE;
        } else {
            (cursor.type_index, cursor.offset) = (cursor.type_index + 1, 0);
        }
    }
    work.attempts = 0;
    *job = work;
    Ok(pieces)
}
