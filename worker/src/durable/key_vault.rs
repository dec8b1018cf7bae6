//! The key vault: a SQLite-backed Durable Object (one instance, named "signing-keys") that
//! generates the signing keys once and keeps them. Being a single object, it serialises
//! callers, so two isolates asking at once cannot make two key sets.

use crate::adapters::webcrypto::WebCryptoKeyGenerator;
use async_trait::async_trait;
use platform::keys::{self, KeyError};
use platform::ports::{KeyRecord, KeyStore, StoreError};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, SqlStorage, State, Storage};

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
        let rotate = match (req.method(), req.path().as_str()) {
            (Method::Get, "/keys") => false,
            (Method::Post, "/rotate") => true,
            _ => return Response::error("unknown key vault operation", 404),
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
            Ok(ring) => Response::from_json(&ring.records()),
            Err(message) => Response::error(message, 500),
        }
    }
}
