//! A FHIR storage partition: one SQLite-backed Durable Object per patient compartment, plus
//! the directory (see `platform::fhir::store`).

use super::rpc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

#[derive(Serialize, Deserialize)]
pub struct PutRequest {
    pub resource: Value,
    pub sort_key: String,
    pub last_updated: String,
}

#[derive(Serialize, Deserialize)]
pub struct GetRequest {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub id: String,
}

#[derive(Serialize, Deserialize)]
pub struct ListRequest {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub limit: u32,
    pub descending: bool,
}

#[derive(Deserialize)]
struct ContentRow {
    content: String,
}

#[derive(Deserialize)]
struct VersionRow {
    version: i64,
}

#[durable_object]
pub struct FhirPartition {
    state: State,
}

fn open(sql: &SqlStorage) -> Result<()> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS resources (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, \
         last_updated TEXT NOT NULL, sort_key TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY (type, id))",
        None,
    )?;
    sql.exec("CREATE INDEX IF NOT EXISTS resources_by_sort ON resources (type, sort_key)", None)?;
    Ok(())
}

fn parse_rows(rows: Vec<ContentRow>) -> Result<Vec<Value>> {
    rows.iter().map(|r| serde_json::from_str(&r.content).map_err(|e| worker::Error::RustError(e.to_string()))).collect()
}

impl DurableObject for FhirPartition {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let sql = self.state.storage().sql();
        open(&sql)?;
        match req.path().as_str() {
            "/put" => {
                let put: PutRequest = rpc::body(req).await?;
                let resource_type = put.resource["resourceType"].as_str().unwrap_or_default().to_owned();
                let id = put.resource["id"].as_str().unwrap_or_default().to_owned();
                let current: Vec<VersionRow> = sql
                    .exec("SELECT version FROM resources WHERE type = ? AND id = ?", vec![resource_type.clone().into(), id.clone().into()])?
                    .to_array()?;
                let version = current.first().map_or(1, |r| r.version + 1);
                let mut resource = put.resource;
                resource["meta"] = serde_json::json!({ "versionId": version.to_string(), "lastUpdated": put.last_updated });
                let content = serde_json::to_string(&resource)?;
                sql.exec(
                    "INSERT INTO resources (type, id, version, last_updated, sort_key, content) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, \
                     sort_key = excluded.sort_key, content = excluded.content",
                    vec![resource_type.into(), id.into(), version.into(), put.last_updated.into(), put.sort_key.into(), content.into()],
                )?;
                Response::from_json(&version)
            }
            "/get" => {
                let get: GetRequest = rpc::body(req).await?;
                let rows: Vec<ContentRow> = sql
                    .exec("SELECT content FROM resources WHERE type = ? AND id = ?", vec![get.resource_type.into(), get.id.into()])?
                    .to_array()?;
                Response::from_json(&parse_rows(rows)?.into_iter().next())
            }
            "/list" => {
                let list: ListRequest = rpc::body(req).await?;
                let order = if list.descending { "DESC" } else { "ASC" };
                let rows: Vec<ContentRow> = sql
                    .exec(
                        &format!("SELECT content FROM resources WHERE type = ? ORDER BY sort_key {order}, id LIMIT ?"),
                        vec![list.resource_type.into(), i64::from(list.limit).into()],
                    )?
                    .to_array()?;
                Response::from_json(&parse_rows(rows)?)
            }
            _ => Response::error("unknown partition operation", 404),
        }
    }
}
