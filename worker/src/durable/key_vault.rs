//! The key vault: a SQLite-backed Durable Object (one instance, named "signing-keys") that
//! generates the signing keys once and keeps them. Being a single object, it serialises
//! callers, so two isolates asking at once cannot make two key sets.

use super::rpc::Answer;
use crate::adapters::webcrypto::WebCryptoKeyGenerator;
use async_trait::async_trait;
use platform::keys::{self, KeyError};
use platform::ports::{KeyRecord, KeyStore, StoreError};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, Storage};

/// The name of the one key vault instance.
pub const INSTANCE: &str = "signing-keys";

struct SqliteKeyStore(SqlStorage);

#[derive(Deserialize)]
struct Row {
    record: String,
}

impl SqliteKeyStore {
    /// Migrates the vault (`platform::schema::KEY_VAULT`) and opens its key table.
    fn open(storage: &Storage) -> Result<Self> {
        super::schema::migrate(storage, &platform::schema::KEY_VAULT)?;
        Ok(Self(storage.sql()))
    }
}

fn store_err(e: impl ToString) -> StoreError {
    StoreError(e.to_string())
}

#[async_trait(?Send)]
impl KeyStore for SqliteKeyStore {
    async fn load(&self) -> std::result::Result<Vec<KeyRecord>, StoreError> {
        let rows: Vec<Row> = self.0.exec("SELECT record FROM signing_keys ORDER BY rowid", None).and_then(|c| c.to_array()).map_err(store_err)?;
        rows.iter().map(|row| serde_json::from_str(&row.record).map_err(store_err)).collect()
    }

    async fn add(&self, record: &KeyRecord) -> std::result::Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(store_err)?;
        let kid = record.jwk.kid.clone().unwrap_or_default();
        self.0
            .exec("INSERT INTO signing_keys (kid, record, created_at) VALUES (?, ?, ?)", vec![kid.into(), json.into(), record.created_at.into()])
            .map(|_| ())
            .map_err(store_err)
    }
}

#[durable_object]
pub struct KeyVault {
    state: State,
}

impl DurableObject for KeyVault {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        super::rpc::serve_fetch(self, req).await
    }
}

impl super::rpc::Commands for KeyVault {
    async fn command(&self, path: &str, body: String) -> Result<Answer> {
        if path.starts_with("/backup/") || path.starts_with("/restore/") {
            return restore::handle(&self.state.storage(), path, &body);
        }
        let rotate = match path {
            "/keys" => false,
            "/rotate" => true,
            _ => return Err(worker::Error::RustError(format!("unknown key vault operation {path}"))),
        };
        let storage = self.state.storage();
        let now = (worker::Date::now().as_millis() / 1000) as i64;
        // Other requests wait while keys are generated, so the vault never makes two sets.
        // Errors come back as values: an Err here would reset the object.
        let outcome = self
            .state
            .block_concurrency_while(async move {
                let run = async {
                    let store = SqliteKeyStore::open(&storage).map_err(|e| KeyError::Store(store_err(e)))?;
                    if rotate {
                        keys::rotate_keys(&store, &WebCryptoKeyGenerator, now).await
                    } else {
                        keys::ensure_keys(&store, &WebCryptoKeyGenerator, now).await
                    }
                };
                Ok(run.await.map_err(|e| e.to_string()))
            })
            .await?;
        match outcome {
            Ok(ring) => Answer::json(&ring.records()),
            Err(message) => Err(worker::Error::RustError(message)),
        }
    }
}

crate::rpc_methods!(KeyVault);

/// Backup and restore (`platform::backup`): the keys exactly as stored (private JWKs
/// included), and the deployment's restore marker, kept here because this one object is
/// strongly consistent (KV is not: a marker there could be missed by the next page).
pub mod restore {
    use super::{Row, SqliteKeyStore};
    use crate::durable::rpc::{self, Answer};
    use crate::durable::JsonCell;
    use crate::keyring::now_secs;
    use platform::backup::{self, RestoreMarker};
    use platform::ports::KeyRecord;
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;
    use worker::{Result, Storage};

    #[derive(Serialize, Deserialize)]
    pub struct Begin {
        pub backup_id: String,
        /// Whether the deployment holds nothing (looked at only when no restore is marked).
        pub empty: bool,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Keys {
        pub records: Vec<Box<RawValue>>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Finish {
        pub backup_id: String,
    }

    pub fn handle(storage: &Storage, path: &str, body: &str) -> Result<Answer> {
        let SqliteKeyStore(sql) = SqliteKeyStore::open(storage)?;
        match path {
            "/backup/keys" => {
                let rows: Vec<Row> = sql.exec("SELECT record FROM signing_keys ORDER BY rowid", None)?.to_array()?;
                let records = rows.into_iter().map(|r| RawValue::from_string(r.record)).collect::<std::result::Result<Vec<_>, _>>()?;
                Answer::json(&records)
            }
            // The gate (`platform::backup::gate`); on the first page the keys this empty
            // deployment may have generated are dropped (nothing was signed with them: it has
            // no client) so that the backup's keys are the only ones.
            "/restore/begin" => {
                let request: Begin = rpc::parse(body)?;
                let cell = JsonCell::opened(sql.clone());
                let marker: Option<RestoreMarker> = cell.load()?;
                match backup::gate(marker.as_ref(), &request.backup_id, request.empty) {
                    Ok(backup::Gate::Start) => {
                        sql.exec("DELETE FROM signing_keys", None)?;
                        cell.store(&RestoreMarker { backup_id: request.backup_id, started_at: now_secs(), finished_at: None })?;
                        Answer::json(&"start")
                    }
                    Ok(backup::Gate::Continue) => Answer::json(&"continue"),
                    Err(refusal) => Answer::refused(&refusal.to_string()),
                }
            }
            // Keys in the backup's order (the vault lists them by rowid); a retried page
            // updates them in place.
            "/restore/keys" => {
                let request: Keys = rpc::parse(body)?;
                for raw in request.records {
                    let record: KeyRecord = serde_json::from_str(raw.get())?;
                    let kid = record.jwk.kid.clone().unwrap_or_default();
                    sql.exec(
                        "INSERT INTO signing_keys (kid, record, created_at) VALUES (?, ?, ?) ON CONFLICT (kid) DO UPDATE SET record = excluded.record, created_at = excluded.created_at",
                        vec![kid.into(), raw.get().to_owned().into(), record.created_at.into()],
                    )?;
                }
                Answer::json(&true)
            }
            "/restore/finish" => {
                let request: Finish = rpc::parse(body)?;
                let cell = JsonCell::opened(sql);
                match cell.load::<RestoreMarker>()? {
                    Some(mut marker) if marker.backup_id == request.backup_id => {
                        marker.finished_at.get_or_insert(now_secs());
                        cell.store(&marker)?;
                        Answer::json(&true)
                    }
                    _ => Answer::refused(&"no restore of this backup is under way"),
                }
            }
            _ => Err(worker::Error::RustError(format!("unknown key vault operation {path}"))),
        }
    }
}
