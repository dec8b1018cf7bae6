//! Versioned storage: the schema of each Durable Object class as an ordered list of
//! migrations, the plan that brings an object from its stored version to the code's, the
//! version of the FHIR search index, and the re-index job's progress.
//!
//! An object stores its schema version in a one-row `schema_version` table. Version 0 is an
//! object with no such table: either new, or written by a release before versioning (7c4a4d6
//! and earlier). Migration 1 of every class is that release's table set, written with
//! `IF NOT EXISTS`, so it applies to both. Every later migration must be safe to run on a
//! database where it already ran (`IF NOT EXISTS`, or a check), because the Worker runs the
//! steps and the version bump in one storage transaction, and a step can be retried after a
//! crash only as a whole. The Worker (`worker/src/durable/schema.rs`) runs the SQL; what to
//! run is decided here.

use crate::fhir::params::REGISTRY_DIGEST;
use crate::fhir::search::index::INDEXER_VERSION;
use serde::{Deserialize, Serialize};

/// One step: the statements that bring an object from `version - 1` to `version`.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    /// What the step changes (for the log line when it runs).
    pub what: &'static str,
    pub statements: &'static [&'static str],
}

/// A Durable Object class's migrations, in order (versions 1, 2, …).
#[derive(Debug)]
pub struct Schema {
    pub class: &'static str,
    pub migrations: &'static [Migration],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Written by newer code: refused, so that this code never reads or writes a layout it
    /// does not know (deploy the newer release again, or restore a backup).
    #[error("this {class} object has schema version {stored}, newer than this release's {known}: it was written by a newer release; deploy that release again (see README, Upgrading)")]
    TooNew { class: &'static str, stored: u32, known: u32 },
}

impl Schema {
    /// The version this code writes.
    pub fn version(&self) -> u32 {
        self.migrations.last().map_or(0, |m| m.version)
    }

    /// The steps to run on an object at `stored` (empty when it is current).
    pub fn plan(&self, stored: u32) -> Result<&[Migration], SchemaError> {
        let known = self.version();
        if stored > known {
            return Err(SchemaError::TooNew { class: self.class, stored, known });
        }
        Ok(&self.migrations[stored as usize..])
    }
}

/// The table that holds an object's schema version (`k` is always 0).
pub const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (k INTEGER PRIMARY KEY CHECK (k = 0), version INTEGER NOT NULL)";

/// The one-document table of `Grant`, `Account` and `ExportJob` (`JsonCell`).
const CELL: &str = "CREATE TABLE IF NOT EXISTS cell (k INTEGER PRIMARY KEY CHECK (k = 0), v TEXT NOT NULL)";

pub const KEY_VAULT: Schema = Schema {
    class: "KeyVault",
    migrations: &[
        Migration {
            version: 1,
            what: "signing_keys",
            statements: &["CREATE TABLE IF NOT EXISTS signing_keys (kid TEXT PRIMARY KEY, record TEXT NOT NULL, created_at INTEGER NOT NULL)"],
        },
        // The deployment's restore marker (`crate::backup`).
        Migration { version: 2, what: "cell (restore marker)", statements: &[CELL] },
    ],
};

pub const GRANT: Schema = Schema { class: "Grant", migrations: &[Migration { version: 1, what: "cell", statements: &[CELL] }] };

pub const ACCOUNT: Schema = Schema { class: "Account", migrations: &[Migration { version: 1, what: "cell", statements: &[CELL] }] };

pub const ASSERTION_LOG: Schema = Schema {
    class: "AssertionLog",
    migrations: &[Migration {
        version: 1,
        what: "jti and grants",
        statements: &[
            "CREATE TABLE IF NOT EXISTS jti (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS jti_by_exp ON jti (exp)",
            "CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, record TEXT NOT NULL, deletable_at INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS grants_by_deletable_at ON grants (deletable_at)",
        ],
    }],
};

pub const EXPORT_JOB: Schema = Schema {
    class: "ExportJob",
    migrations: &[Migration {
        version: 1,
        what: "cell and chunk",
        statements: &[
            "CREATE TABLE IF NOT EXISTS chunk (seq INTEGER PRIMARY KEY AUTOINCREMENT, file INTEGER NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS chunk_file ON chunk (file, seq)",
            CELL,
        ],
    }],
};

pub const FHIR_PARTITION: Schema = Schema {
    class: "FhirPartition",
    migrations: &[
        Migration {
            version: 1,
            what: "res, hist, idx, dir",
            statements: &[
                "CREATE TABLE IF NOT EXISTS res (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, content TEXT NOT NULL, PRIMARY KEY (type, id))",
                "CREATE TABLE IF NOT EXISTS hist (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, content TEXT NOT NULL, PRIMARY KEY (type, id, version))",
                "CREATE TABLE IF NOT EXISTS idx (type TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, sys TEXT, code TEXT, text TEXT, date_lo TEXT, date_hi TEXT, num REAL, reference TEXT)",
                "CREATE INDEX IF NOT EXISTS idx_token ON idx (type, name, code)",
                "CREATE INDEX IF NOT EXISTS idx_ref ON idx (type, name, reference)",
                "CREATE INDEX IF NOT EXISTS idx_date ON idx (type, name, date_lo)",
                "CREATE INDEX IF NOT EXISTS idx_row ON idx (type, id)",
                "CREATE TABLE IF NOT EXISTS dir (type TEXT NOT NULL, id TEXT NOT NULL, partition TEXT NOT NULL, PRIMARY KEY (type, id))",
            ],
        },
        Migration {
            version: 2,
            what: "meta (index version, re-index cursor and job)",
            // No index_version row yet: the partition's index counts as stale, so a partition
            // of an older release re-indexes on first use (an empty one finishes at once).
            statements: &["CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)"],
        },
        // The backup walks the directory's partitions in order (`crate::backup`).
        Migration { version: 3, what: "dir_partition index", statements: &["CREATE INDEX IF NOT EXISTS dir_partition ON dir (partition)"] },
        // A resource's index rows by parameter: the search's sort keys read one parameter of
        // one resource (`crate::fhir::search::sql`); (type, id) alone left SQLite choosing
        // `idx_date` and walking every row of the parameter. It also serves what idx_row did.
        Migration {
            version: 4,
            what: "idx_row_name in place of idx_row",
            statements: &["CREATE INDEX IF NOT EXISTS idx_row_name ON idx (type, id, name)", "DROP INDEX IF EXISTS idx_row"],
        },
    ],
};

/// Every class, for the tests and the docs.
pub const ALL: &[&Schema] = &[&KEY_VAULT, &GRANT, &ACCOUNT, &ASSERTION_LOG, &EXPORT_JOB, &FHIR_PARTITION];

/// The version of a partition's search index: the parameter table's digest (written by
/// `scripts/gen-fhir-registry.mjs`) and [`INDEXER_VERSION`]. A partition whose recorded
/// version differs (older or newer) rebuilds its `idx` rows from its `res` rows.
pub fn index_version() -> String {
    format!("{REGISTRY_DIGEST}.{INDEXER_VERSION}")
}

/// Resources re-indexed per step (one storage transaction each, a few milliseconds of CPU): a
/// Synthea patient's compartment of ~70 resources takes two steps.
pub const REINDEX_BATCH: usize = 50;

/// The background re-index job (kept by the directory partition): every partition the
/// directory knows, a few per alarm, each brought to [`index_version`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReindexJob {
    /// The index version the job brings partitions to.
    pub index_version: String,
    /// Partitions to visit (the directory's distinct partitions, plus the directory).
    pub total: u64,
    /// Partitions visited.
    pub done: u64,
    /// The last partition visited (partitions go in name order; empty before the first).
    pub after: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Consecutive failed steps (the step is retried with a growing delay).
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Partitions visited per alarm of the job.
pub const JOB_PARTITIONS_PER_STEP: usize = 10;
/// After this many consecutive failures the job stops (`POST /admin/fhir/reindex` restarts it).
pub const JOB_MAX_FAILURES: u32 = 5;

impl ReindexJob {
    pub fn start(total: u64, now: i64) -> Self {
        Self { index_version: index_version(), total, started_at: now, ..Self::default() }
    }

    pub fn running(&self) -> bool {
        self.finished_at.is_none() && self.failures < JOB_MAX_FAILURES
    }

    /// Records a step that visited `visited` (in order); `last` says the directory had no
    /// partitions after them. A partition created while the job runs is indexed at its
    /// first write, so the count may end above the total taken at the start: `total` grows
    /// with it, and `done` never passes it.
    pub fn advance(&mut self, visited: &[String], last: bool, now: i64) {
        self.done += visited.len() as u64;
        self.total = self.total.max(self.done);
        if let Some(name) = visited.last() {
            self.after = name.clone();
        }
        self.failures = 0;
        self.last_error = None;
        if last {
            self.finished_at = Some(now);
        }
    }

    /// Records a failed step; returns the delay before the next try (ms), or `None` when the
    /// job gives up.
    pub fn fail(&mut self, error: String) -> Option<u64> {
        self.failures += 1;
        self.last_error = Some(error);
        (self.failures < JOB_MAX_FAILURES).then(|| 1000 * u64::from(self.failures))
    }

    /// The job's state word in the admin API.
    pub fn state(&self) -> &'static str {
        if self.finished_at.is_some() {
            "done"
        } else if self.failures >= JOB_MAX_FAILURES {
            "failed"
        } else {
            "running"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_numbers_its_migrations_from_one_without_gaps() {
        for schema in ALL {
            assert!(!schema.migrations.is_empty(), "{}", schema.class);
            for (i, m) in schema.migrations.iter().enumerate() {
                assert_eq!(m.version as usize, i + 1, "{} step {}", schema.class, m.what);
                assert!(!m.statements.is_empty());
            }
        }
    }

    #[test]
    fn every_statement_can_run_twice() {
        // A migration re-run after a crash (or on an object of the release before versioning,
        // whose tables exist) must not fail: creations say IF NOT EXISTS, drops IF EXISTS.
        for schema in ALL {
            for m in schema.migrations {
                for s in m.statements {
                    assert!(
                        s.starts_with("CREATE TABLE IF NOT EXISTS ") || s.starts_with("CREATE INDEX IF NOT EXISTS ") || s.starts_with("DROP INDEX IF EXISTS "),
                        "{}: {s}",
                        schema.class
                    );
                }
            }
        }
        assert!(VERSION_TABLE.starts_with("CREATE TABLE IF NOT EXISTS "));
    }

    #[test]
    fn the_plan_runs_the_steps_after_the_stored_version() {
        let all: Vec<u32> = FHIR_PARTITION.plan(0).unwrap().iter().map(|m| m.version).collect();
        assert_eq!(all, vec![1, 2, 3, 4], "a new object, or one of the release before versioning");
        assert_eq!(FHIR_PARTITION.plan(1).unwrap().iter().map(|m| m.version).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(FHIR_PARTITION.plan(4).unwrap().is_empty(), "current: nothing to do");
        assert_eq!(FHIR_PARTITION.version(), 4);
        assert_eq!(GRANT.plan(1).unwrap().len(), 0);
    }

    #[test]
    fn an_object_written_by_newer_code_is_refused() {
        let err = FHIR_PARTITION.plan(5).unwrap_err();
        assert_eq!(err, SchemaError::TooNew { class: "FhirPartition", stored: 5, known: 4 });
        assert!(err.to_string().contains("schema version 5, newer than this release's 4"), "{err}");
    }

    #[test]
    fn the_index_version_names_the_registry_and_the_indexer() {
        let v = index_version();
        assert_eq!(v, format!("{REGISTRY_DIGEST}.{INDEXER_VERSION}"));
        assert_eq!(REGISTRY_DIGEST.len(), 16);
        assert!(REGISTRY_DIGEST.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_job_counts_partitions_to_the_total() {
        let mut job = ReindexJob::start(3, 100);
        assert_eq!(job.state(), "running");
        job.advance(&["directory".into(), "patient/a".into()], false, 101);
        assert_eq!((job.done, job.total, job.after.as_str()), (2, 3, "patient/a"));
        assert_eq!(job.fail("partition patient/b: boom".into()), Some(1000));
        assert_eq!(job.fail("again".into()), Some(2000));
        job.advance(&["patient/b".into(), "patient/c".into()], true, 102);
        assert_eq!((job.done, job.total, job.state(), job.failures), (4, 4, "done", 0), "a partition made meanwhile raises the total");
        assert_eq!(job.finished_at, Some(102));
        assert!(!job.running());
    }

    #[test]
    fn the_job_gives_up_after_repeated_failures() {
        let mut job = ReindexJob::start(1, 0);
        for i in 1..JOB_MAX_FAILURES {
            assert_eq!(job.fail("x".into()), Some(1000 * u64::from(i)));
        }
        assert_eq!(job.fail("x".into()), None);
        assert_eq!(job.state(), "failed");
        assert!(!job.running());
    }

    mod kv_records {
        use crate::memory::MemoryKv;
        use crate::ports::{self, KvStore, RECORD_VERSION};
        use crate::settings::{self, ServerSettings, SETTINGS_KEY};
        use crate::users::{self, User};
        use futures::executor::block_on;
        use serde_json::{json, Value};

        fn user() -> User {
            User {
                username: "dr.test".into(),
                display_name: "Dr. Test".into(),
                fhir_user: "Practitioner/p1".into(),
                password_hash: "pbkdf2-sha256$100000$c2FsdA$aGFzaA".into(),
            }
        }

        fn raw(kv: &MemoryKv, key: &str) -> Value {
            serde_json::from_str(&block_on(kv.get(key)).unwrap().unwrap()).unwrap()
        }

        #[test]
        fn records_are_written_with_their_version() {
            let kv = MemoryKv::default();
            block_on(users::save(&kv, &user())).unwrap();
            let stored = raw(&kv, "user:dr.test");
            assert_eq!(stored["record_version"], json!(RECORD_VERSION));
            assert_eq!(stored["username"], json!("dr.test"));
            assert_eq!(block_on(users::load(&kv, "dr.test")).unwrap(), Some(user()));
        }

        #[test]
        fn an_unversioned_record_is_read_and_upgraded_in_place() {
            let kv = MemoryKv::default();
            let legacy = serde_json::to_string(&user()).unwrap();
            block_on(kv.put("user:dr.test", &legacy)).unwrap();
            assert_eq!(block_on(users::load(&kv, "dr.test")).unwrap(), Some(user()));
            let upgraded = raw(&kv, "user:dr.test");
            assert_eq!(upgraded["record_version"], json!(1));
            let mut without = upgraded.clone();
            without.as_object_mut().unwrap().remove("record_version");
            assert_eq!(without, serde_json::from_str::<Value>(&legacy).unwrap(), "nothing else changes");
            // Reading it again writes nothing more.
            let again = block_on(kv.get("user:dr.test")).unwrap();
            block_on(users::load(&kv, "dr.test")).unwrap();
            assert_eq!(block_on(kv.get("user:dr.test")).unwrap(), again);
        }

        #[test]
        fn settings_strict_about_fields_still_read_both_forms() {
            let kv = MemoryKv::default();
            let custom = ServerSettings { server_name: "Upgrade EHR".into(), ..ServerSettings::default() };
            block_on(kv.put(SETTINGS_KEY, &serde_json::to_string(&custom).unwrap())).unwrap();
            assert_eq!(block_on(settings::load(&kv)).unwrap(), custom);
            assert_eq!(raw(&kv, SETTINGS_KEY)["record_version"], json!(1));
            assert_eq!(block_on(settings::load(&kv)).unwrap(), custom);
        }

        #[test]
        fn a_record_of_a_newer_release_is_refused() {
            let kv = MemoryKv::default();
            let mut newer = serde_json::to_value(user()).unwrap();
            newer["record_version"] = json!(RECORD_VERSION + 1);
            block_on(kv.put("user:dr.test", &newer.to_string())).unwrap();
            let err = block_on(users::load(&kv, "dr.test")).unwrap_err();
            assert!(err.0.contains("written by a newer release"), "{}", err.0);
            assert_eq!(raw(&kv, "user:dr.test"), newer, "left as it was");
            assert!(ports::decode_record::<User>("k", "[1]").is_err(), "not an object");
            assert!(ports::decode_record::<User>("k", r#"{"record_version":"x"}"#).is_err());
        }
    }
}
