// A refresh grace window longer than the 30 s default works as configured (issue 8): a second
// tab refreshing with the rotated-out token 33 s after the rotation, inside a 45 s window, gets
// the same new token instead of revoking the grant. (Its own file: it waits half a minute, in
// parallel with the other files.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, adminHeaders } from "./helpers/worker.mjs";
import { seed } from "./helpers/fixtures.mjs";
import { authorize, exchange, refresh } from "./helpers/flows.mjs";

let w;
before(async () => {
  w = await startWorker();
  await seed(w);
});
after(() => w.dispose());

test("refresh_grace_secs = 45: the previous token still gets the current one after 33 s", async () => {
  const set = await w.fetch("/admin/settings", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ refresh_grace_secs: 45 }) });
  assert.equal(set.status, 200);
  const { code, verifier } = await authorize(w);
  const first = (await exchange(w, code, verifier)).body;
  const second = await refresh(w, first.refresh_token);
  assert.equal(second.res.status, 200, JSON.stringify(second.body));
  await new Promise((r) => setTimeout(r, 33_000));
  const late = await refresh(w, first.refresh_token);
  assert.equal(late.res.status, 200, JSON.stringify(late.body));
  assert.equal(late.body.refresh_token, second.body.refresh_token);
  assert.equal((await refresh(w, second.body.refresh_token)).res.status, 200, "the grant is still alive");
});
