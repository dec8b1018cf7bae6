//! Durable Object classes. Each keeps its state in its own SQLite database and runs the
//! platform's state machines on it; the Worker reaches them through [`rpc`].

pub mod account;
pub mod assertion_log;
pub mod export_job;
pub mod fhir_partition;
pub mod grant;
pub mod key_vault;
pub mod rpc;
pub mod schema;

use platform::schema::Schema;
use serde::{de::DeserializeOwned, Serialize};
use worker::{Result, SqlStorage, Storage};

/// One JSON document per object, in a one-row table: enough for objects whose whole state is
/// a small value loaded and stored as one (grants, accounts).
pub struct JsonCell(SqlStorage);

#[derive(serde::Deserialize)]
struct CellRow {
    v: String,
}

impl JsonCell {
    /// Migrates the object to `schema` (which has the `cell` table) and opens its cell.
    pub fn open(storage: &Storage, schema: &'static Schema) -> Result<Self> {
        schema::migrate(storage, schema)?;
        Ok(Self(storage.sql()))
    }

    /// [`open`](Self::open), migrating only on this instance's first call (`migrated` lives
    /// in the object): the schema check is two reads, on every call otherwise.
    pub fn open_once(storage: &Storage, schema: &'static Schema, migrated: &std::cell::Cell<bool>) -> Result<Self> {
        if !migrated.get() {
            schema::migrate(storage, schema)?;
            migrated.set(true);
        }
        Ok(Self(storage.sql()))
    }

    /// The cell of an object already migrated to a schema that has it.
    pub fn opened(sql: SqlStorage) -> Self {
        Self(sql)
    }

    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let rows: Vec<CellRow> = self.0.exec("SELECT v FROM cell WHERE k = 0", None)?.to_array()?;
        match rows.first() {
            None => Ok(None),
            Some(row) => serde_json::from_str(&row.v).map(Some).map_err(|e| worker::Error::RustError(e.to_string())),
        }
    }

    pub fn store<T: Serialize>(&self, value: &T) -> Result<()> {
        let json = serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.0.exec("INSERT INTO cell (k, v) VALUES (0, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", vec![json.into()])?;
        Ok(())
    }
}
