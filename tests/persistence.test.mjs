// State survives a restart of workerd with the same persistence folder: the signing keys
// (SQLite Durable Object) and the settings (KV).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders, tempDir } from "./helpers/worker.mjs";

test("keys and settings survive a restart with the same persistence folder", async () => {
  const persistTo = tempDir();
  const first = await startWorker({ persistTo });
  const keys = (await first.json("/.well-known/jwks.json")).body;
  const settings = {
    server_name: "Persistent EHR",
    ehr_origins: [],
    introspection_style: "rfc7662",
    refresh_grace_secs: 30,
    open_registration: true,
    registration_token_hash: null,
    associated_endpoints: [],
    user_access_brand: null,
  };
  const put = await first.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify(settings) });
  assert.equal(put.status, 200);
  await first.dispose();

  const second = await startWorker({ persistTo });
  try {
    assert.deepEqual((await second.json("/.well-known/jwks.json")).body, keys);
    assert.deepEqual((await second.json("/admin/settings", { headers: adminHeaders() })).body, settings);
  } finally {
    await second.dispose();
  }

  const elsewhere = await startWorker();
  try {
    const other = (await elsewhere.json("/.well-known/jwks.json")).body;
    assert.notDeepEqual(other.keys.map((k) => k.kid), keys.keys.map((k) => k.kid), "another folder has other keys");
  } finally {
    await elsewhere.dispose();
  }
});
