//! Runs `platform::schema`'s migrations on a Durable Object's SQLite storage: every object
//! calls [`migrate`] before touching its tables. The steps and the new version are written in
//! one storage transaction (`transactionSync`: SQL-backed objects refuse a raw `BEGIN`), so an
//! object is at its old version or its new one, never between; an object written by newer
//! code is refused with a clear error instead of being read or changed.

use platform::schema::{Schema, VERSION_TABLE};
use serde::Deserialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Error, Result, SqlStorage, Storage};

/// Runs `f` in one storage transaction (the JS API's `transactionSync`): its writes commit
/// together, or, when it returns an error, none do.
pub fn transaction<T: 'static>(storage: &Storage, f: impl FnOnce() -> Result<T> + 'static) -> Result<T> {
    let raw: &JsValue = storage.as_raw().as_ref();
    let run: js_sys::Function = js_sys::Reflect::get(raw, &JsValue::from_str("transactionSync"))?
        .dyn_into()
        .map_err(|_| Error::RustError("this storage has no transactionSync (not a SQLite-backed object?)".into()))?;
    let out: Rc<RefCell<Option<Result<T>>>> = Rc::new(RefCell::new(None));
    let slot = out.clone();
    let mut f = Some(f);
    let body = Closure::<dyn FnMut() -> std::result::Result<JsValue, JsValue>>::new(move || {
        let result = f.take().map_or_else(|| Err(Error::RustError("transaction body ran twice".into())), |f| f());
        let failed = result.as_ref().err().map(|e| JsValue::from_str(&e.to_string()));
        *slot.borrow_mut() = Some(result);
        // Throwing makes transactionSync roll the writes back.
        failed.map_or(Ok(JsValue::UNDEFINED), Err)
    });
    let called = run.call1(raw, body.as_ref().unchecked_ref());
    drop(body);
    let result = out.borrow_mut().take();
    match (called, result) {
        (_, Some(result)) => result,
        (Err(e), None) => Err(Error::JsError(format!("transaction: {e:?}"))),
        (Ok(_), None) => Err(Error::RustError("the transaction body did not run".into())),
    }
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

#[derive(Deserialize)]
struct VersionRow {
    version: i64,
}

/// The object's schema version (0: no `schema_version` table: new, or written before
/// versioning).
pub fn stored_version(sql: &SqlStorage) -> Result<u32> {
    let tables: Vec<CountRow> = sql.exec("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'", None)?.to_array()?;
    if tables.first().is_none_or(|t| t.n == 0) {
        return Ok(0);
    }
    let rows: Vec<VersionRow> = sql.exec("SELECT version FROM schema_version WHERE k = 0", None)?.to_array()?;
    Ok(rows.first().map_or(0, |r| r.version.max(0) as u32))
}

/// Whether the object has no table at all (never written: a new object).
pub fn is_blank(sql: &SqlStorage) -> Result<bool> {
    let tables: Vec<CountRow> =
        sql.exec("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'", None)?.to_array()?;
    Ok(tables.first().is_none_or(|t| t.n == 0))
}

/// Brings the object to `schema`'s version (nothing to do when it is there: one read). Runs
/// the missing steps and records the version in one transaction.
pub fn migrate(storage: &Storage, schema: &'static Schema) -> Result<()> {
    let sql = storage.sql();
    let stored = stored_version(&sql)?;
    let steps = schema.plan(stored).map_err(|e| Error::RustError(e.to_string()))?;
    if steps.is_empty() {
        return Ok(());
    }
    let target = schema.version();
    // A new object is not news; one written by an earlier release is.
    let upgraded = stored > 0 || {
        let tables: Vec<CountRow> =
            sql.exec("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'", None)?.to_array()?;
        tables.first().is_some_and(|t| t.n > 0)
    };
    transaction(storage, move || {
        sql.exec(VERSION_TABLE, None)?;
        for step in steps {
            for statement in step.statements {
                sql.exec(statement, None)?;
            }
        }
        sql.exec(
            "INSERT INTO schema_version (k, version) VALUES (0, ?) ON CONFLICT (k) DO UPDATE SET version = excluded.version",
            vec![i64::from(target).into()],
        )?;
        Ok(())
    })?;
    if upgraded {
        let what: Vec<&str> = steps.iter().map(|s| s.what).collect();
        worker::console_log!("{}", serde_json::json!({ "event": "schema_migrated", "class": schema.class, "from": stored, "to": target, "steps": what }));
    }
    Ok(())
}
