//! [`KvStore`] over a Workers KV namespace.

use async_trait::async_trait;
use platform::ports::{KvStore, StoreError};

pub struct WorkersKv(pub worker::kv::KvStore);

#[async_trait(?Send)]
impl KvStore for WorkersKv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.0.get(key).text().await.map_err(|e| StoreError(e.to_string()))
    }

    async fn put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.0.put(key, value).map_err(|e| StoreError(e.to_string()))?.execute().await.map_err(|e| StoreError(e.to_string()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await.map_err(|e| StoreError(e.to_string()))
    }
}
