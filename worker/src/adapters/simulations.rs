//! [`Simulations`] in the `CONFIG` KV namespace (`simulate:{client_id}`): read and written
//! through on every call (no isolate cache: a simulation is taken once).

use crate::context::AppContext;
use crate::settings::kv;
use async_trait::async_trait;
use platform::ports::StoreError;
use platform::simulate::{self, Simulation, Simulations};

pub struct KvSimulations<'a>(pub &'a AppContext);

#[async_trait(?Send)]
impl Simulations for KvSimulations<'_> {
    async fn get(&self, client_id: &str) -> Result<Option<Simulation>, StoreError> {
        let kv = kv(self.0).map_err(|e| StoreError(format!("{e:?}")))?;
        simulate::load(&kv, client_id).await
    }

    async fn set(&self, client_id: &str, simulation: Option<&Simulation>) -> Result<(), StoreError> {
        let kv = kv(self.0).map_err(|e| StoreError(format!("{e:?}")))?;
        simulate::store(&kv, client_id, simulation).await
    }
}
