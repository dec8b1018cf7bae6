// Lab Viewer (the redirect page): `SMART.ready()`, then the patient banner, the patient's
// results grouped by LOINC code in a table, and the selected test's trend as a hand-drawn SVG
// chart. Everything SMART and FHIR goes through the SDK's public API.
import * as SMART from "/sdk/smart-edge.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const LOINC = "http://loinc.org";
const CATEGORIES = {
  laboratory: { label: "laboratory results", empty: "No laboratory results are on file for this patient." },
  "vital-signs": { label: "vital signs", empty: "No vital signs are on file for this patient." },
};

// General adult ranges for common tests, used only when the Observation carries no
// referenceRange of its own (Synthea's sample data has none) and the unit matches. Shown as
// "typical" in the page; the lab's own range always wins.
const TYPICAL = {
  "4548-4": { unit: "%", low: 4.0, high: 5.6 },
  "2339-0": { unit: "mg/dL", low: 70, high: 99 },
  "2345-7": { unit: "mg/dL", low: 70, high: 99 },
  "2093-3": { unit: "mg/dL", high: 200 },
  "2571-8": { unit: "mg/dL", high: 150 },
  "18262-6": { unit: "mg/dL", high: 100 },
  "2085-9": { unit: "mg/dL", low: 40 },
  "718-7": { unit: "g/dL", low: 12.0, high: 17.5 },
  "6690-2": { unit: "10*3/uL", low: 4.5, high: 11.0 },
  "789-8": { unit: "10*6/uL", low: 4.2, high: 5.9 },
  "4544-3": { unit: "%", low: 36, high: 50 },
  "787-2": { unit: "fL", low: 80, high: 100 },
  "785-6": { unit: "pg", low: 27, high: 33 },
  "786-4": { unit: "g/dL", low: 32, high: 36 },
  "777-3": { unit: "10*3/uL", low: 150, high: 450 },
  "38483-4": { unit: "mg/dL", low: 0.6, high: 1.3 },
  "2160-0": { unit: "mg/dL", low: 0.6, high: 1.3 },
  "6299-2": { unit: "mg/dL", low: 7, high: 20 },
  "2947-0": { unit: "mmol/L", low: 135, high: 145 },
  "2951-2": { unit: "mmol/L", low: 135, high: 145 },
  "6298-4": { unit: "mmol/L", low: 3.5, high: 5.1 },
  "2823-3": { unit: "mmol/L", low: 3.5, high: 5.1 },
  "2069-3": { unit: "mmol/L", low: 98, high: 107 },
  "2075-0": { unit: "mmol/L", low: 98, high: 107 },
  "20565-8": { unit: "mmol/L", low: 22, high: 29 },
  "2028-9": { unit: "mmol/L", low: 22, high: 29 },
  "49765-1": { unit: "mg/dL", low: 8.5, high: 10.2 },
  "17861-6": { unit: "mg/dL", low: 8.5, high: 10.2 },
  "33914-3": { unit: "mL/min/{1.73_m2}", low: 60 },
  "8480-6": { unit: "mm[Hg]", low: 90, high: 120 },
  "8462-4": { unit: "mm[Hg]", low: 60, high: 80 },
  "8867-4": { unit: "/min", low: 60, high: 100 },
  "9279-1": { unit: "/min", low: 12, high: 20 },
  "39156-5": { unit: "kg/m2", low: 18.5, high: 25 },
};

const state = { client: null, category: "laboratory", tests: [], selected: null, loads: {} };

// ---------------------------------------------------------------- small helpers

function show(id, visible = true) { $(id).hidden = !visible; }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) node.append(c);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  for (const c of children.flat()) if (c !== undefined && c !== null) node.append(c);
  return node;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** A FHIR date or dateTime for people (the date alone when the time is midnight or absent). */
function formatDate(value, withTime = false) {
  if (!value) return "–";
  if (/^\d{4}$/.test(value)) return value;
  if (/^\d{4}-\d{2}$/.test(value)) return new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short" }).format(new Date(`${value}-01T00:00:00`));
  const d = new Date(value.length === 10 ? `${value}T00:00:00` : value);
  if (Number.isNaN(d.getTime())) return value;
  return withTime && value.length > 10 ? dateTimeFormat.format(d) : dateFormat.format(d);
}

/** A number the way a lab report prints it: at most 3 significant decimals, no trailing zeros. */
function formatNumber(n) {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }).format(n);
}

/** UCUM units as people write them. */
function formatUnit(unit) {
  if (!unit) return "";
  return String(unit)
    .replace(/^10\*(\d+)\//, (_, e) => `×10${e.split("").map((d) => "⁰¹²³⁴⁵⁶⁷⁸⁹"[d]).join("")}/`)
    .replace("mm[Hg]", "mmHg").replace("{1.73_m2}", "1.73 m²").replace("kg/m2", "kg/m²").replace(/^\/min$/, "/min");
}

function withUnit(value, unit) {
  const u = formatUnit(unit);
  return u ? (u === "%" ? `${value}${u}` : `${value} ${u}`) : `${value}`;
}

// ---------------------------------------------------------------- errors people understand

function explain(e) {
  const code = e?.code ?? "";
  const restart = { href: `launch.html?${new URLSearchParams({ iss: state.client?.state?.serverUrl ?? `${location.origin}/fhir` })}`, label: "Sign in again" };
  if (code === "no_session") {
    return { title: "You are not signed in", text: "Lab Viewer opens from your EHR, which signs you in and chooses the patient. You can also start it yourself: sign in and pick a patient.", restart: { ...restart, label: "Sign in and choose a patient" } };
  }
  if (code === "access_denied") {
    return { title: "Access was not granted", text: "Lab Viewer may only show a record after you allow it on the consent page, and only records your account may see. Nothing was shared.", restart: { ...restart, label: "Start again" } };
  }
  if (code === "network_error" || code === "discovery_failed") {
    return { title: "The server cannot be reached", text: "Lab Viewer could not reach the health record server. Check your connection, or whether the server is running, then try again.", retry: true };
  }
  if (code === "invalid_state") {
    return { title: "This sign-in link has expired", text: "The sign-in was already completed, took too long, or was started in another browser. Start again.", restart };
  }
  if (e?.status === 401 || code === "invalid_token" || code === "invalid_grant" || code === "no_refresh_token") {
    return { title: "Your session has ended", text: "Sign in again to keep viewing this record.", restart };
  }
  if (e?.status === 403 || code === "forbidden" || code === "insufficient_scope") {
    return { title: "Not allowed", text: "Your sign-in does not allow Lab Viewer to read these results.", restart };
  }
  if (code === "no_context") {
    return { title: "No patient was chosen", text: "Lab Viewer shows one patient's results; this sign-in did not name a patient.", restart };
  }
  return { title: "Something went wrong", text: `${e?.message ?? e}${code ? ` (${code})` : ""}`, retry: true, restart };
}

function fail(e) {
  const { title, text, restart, retry } = explain(e);
  show("status", false);
  show("results", false);
  $("problem-title").textContent = title;
  $("problem-text").textContent = text;
  $("problem").dataset.code = e?.code ?? "";
  show("problem-restart", Boolean(restart));
  if (restart) {
    $("problem-restart").href = restart.href;
    $("problem-restart").textContent = restart.label;
  }
  show("problem-retry", Boolean(retry));
  show("problem");
}

$("problem-retry").addEventListener("click", () => location.reload());

// ---------------------------------------------------------------- the patient banner

function humanName(patient) {
  const names = patient.name ?? [];
  const name = names.find((n) => n.use === "official") ?? names.find((n) => n.use !== "old" && n.use !== "maiden") ?? names[0];
  if (!name) return "(no name)";
  if (name.text) return name.text;
  return [...(name.prefix ?? []), ...(name.given ?? []), name.family].filter(Boolean).join(" ");
}

function age(birthDate, until) {
  const born = new Date(`${birthDate}T00:00:00`);
  const end = until ? new Date(until) : new Date();
  let years = end.getFullYear() - born.getFullYear();
  if (end.getMonth() < born.getMonth() || (end.getMonth() === born.getMonth() && end.getDate() < born.getDate())) years--;
  return years;
}

function identifierOf(patient) {
  const ids = patient.identifier ?? [];
  const typed = (code) => ids.find((i) => i.type?.coding?.some((c) => c.code === code));
  const id = typed("MR") ?? ids.find((i) => !i.type) ?? ids[0];
  if (!id) return { label: "Id", value: patient.id };
  const label = id.type?.coding?.some((c) => c.code === "MR") ? "MRN" : id.type?.text ?? "Identifier";
  return { label, value: id.value };
}

function drawBanner(patient) {
  $("patient-name").textContent = humanName(patient);
  const gender = patient.gender ? patient.gender[0].toUpperCase() + patient.gender.slice(1) : "Unknown";
  $("patient-gender").textContent = gender;
  if (patient.birthDate) {
    const died = patient.deceasedDateTime;
    $("patient-age").textContent = died ? `${age(patient.birthDate, died)} y (deceased ${formatDate(died)})` : `${age(patient.birthDate)} y`;
    $("patient-birth").textContent = formatDate(patient.birthDate);
  } else {
    $("patient-age").textContent = "–";
    $("patient-birth").textContent = "unknown";
  }
  const id = identifierOf(patient);
  $("patient-identifier-label").textContent = id.label;
  $("patient-identifier").textContent = id.value;
  $("banner").dataset.patientId = patient.id;
  show("banner");
}

// ---------------------------------------------------------------- observations → tests

function effective(obs) {
  return obs.effectiveDateTime ?? obs.effectivePeriod?.start ?? obs.effectiveInstant ?? obs.issued ?? null;
}

function codeKey(code) {
  const codings = code?.coding ?? [];
  const loinc = codings.find((c) => c.system === LOINC && c.code);
  const any = loinc ?? codings.find((c) => c.code);
  if (any) return { key: any.system === LOINC ? any.code : `${any.system ?? ""}|${any.code}`, loinc: loinc?.code ?? null, name: code.text ?? any.display ?? any.code };
  return code?.text ? { key: `text:${code.text}`, loinc: null, name: code.text } : null;
}

function rangeOf(obs) {
  const r = obs.referenceRange?.[0];
  if (!r) return null;
  const low = r.low?.value;
  const high = r.high?.value;
  if (low === undefined && high === undefined && !r.text) return null;
  return { low, high, text: r.text, unit: r.low?.unit ?? r.high?.unit, source: "lab" };
}

/** One result of one test: an Observation's value, or one of its components'. */
function resultOf(obs, part, date) {
  const q = part.valueQuantity;
  let value = null;
  let display;
  if (q && typeof q.value === "number") {
    value = q.value;
    display = withUnit(`${q.comparator ?? ""}${formatNumber(q.value)}`, q.unit ?? q.code);
  } else if (part.valueCodeableConcept) {
    display = part.valueCodeableConcept.text ?? part.valueCodeableConcept.coding?.[0]?.display ?? part.valueCodeableConcept.coding?.[0]?.code;
  } else if (part.valueString !== undefined) display = part.valueString;
  else if (part.valueBoolean !== undefined) display = part.valueBoolean ? "yes" : "no";
  else if (part.valueInteger !== undefined) { value = part.valueInteger; display = String(part.valueInteger); }
  else if (part.dataAbsentReason) display = `(${part.dataAbsentReason.text ?? part.dataAbsentReason.coding?.[0]?.display ?? "absent"})`;
  else return null;
  return {
    id: obs.id,
    date,
    time: date ? new Date(date.length === 10 ? `${date}T00:00:00` : date).getTime() : NaN,
    value,
    unit: q?.unit ?? q?.code ?? "",
    display,
    range: rangeOf(part),
    interpretation: part.interpretation ?? null,
  };
}

function groupTests(observations) {
  const tests = new Map();
  const add = (code, obs, part) => {
    const key = codeKey(code);
    if (!key) return;
    const result = resultOf(obs, part, effective(obs));
    if (!result) return;
    if (!tests.has(key.key)) tests.set(key.key, { ...key, results: [] });
    tests.get(key.key).results.push(result);
  };
  for (const obs of observations) {
    if (obs?.resourceType !== "Observation" || obs.status === "entered-in-error") continue;
    const hasValue = ["valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "dataAbsentReason"].some((k) => obs[k] !== undefined);
    if (hasValue || !obs.component?.length) add(obs.code, obs, obs);
    for (const component of obs.component ?? []) add(component.code, obs, component);
  }
  for (const t of tests.values()) {
    t.results.sort((a, b) => (a.time || 0) - (b.time || 0));
    t.latest = t.results[t.results.length - 1];
    t.unit = t.latest.unit;
    const typical = t.loinc && TYPICAL[t.loinc];
    t.range = t.latest.range ?? [...t.results].reverse().find((r) => r.range)?.range
      ?? (typical && typical.unit === t.unit ? { low: typical.low, high: typical.high, unit: typical.unit, source: "typical" } : null);
    t.flag = flagOf(t.latest, t.range);
    t.numeric = t.results.filter((r) => r.value !== null && Number.isFinite(r.time));
  }
  return [...tests.values()].sort((a, b) => a.name.localeCompare(b.name));
}

const INTERPRETATION = { H: "high", HH: "high", HU: "high", ">": "high", L: "low", LL: "low", LU: "low", "<": "low", A: "abnormal", AA: "abnormal", N: "normal" };

/** High, low, abnormal or normal: the lab's interpretation first, else against the range. */
function flagOf(result, range) {
  const codes = (result.interpretation ?? []).flatMap((i) => i.coding ?? []).map((c) => c.code);
  for (const code of codes) if (INTERPRETATION[code]) return { kind: INTERPRETATION[code], source: "lab" };
  if (result.value === null || !range) return null;
  if (range.low !== undefined && result.value < range.low) return { kind: "low", source: range.source };
  if (range.high !== undefined && result.value > range.high) return { kind: "high", source: range.source };
  if (range.low !== undefined || range.high !== undefined) return { kind: "normal", source: range.source };
  return null;
}

function rangeText(range) {
  if (!range) return "–";
  let text;
  if (range.low !== undefined && range.high !== undefined) text = `${formatNumber(range.low)}–${withUnit(formatNumber(range.high), range.unit)}`;
  else if (range.low !== undefined) text = `≥ ${withUnit(formatNumber(range.low), range.unit)}`;
  else if (range.high !== undefined) text = `≤ ${withUnit(formatNumber(range.high), range.unit)}`;
  else text = range.text;
  return range.source === "typical" ? `${text} (typical)` : text;
}

const FLAG_LABEL = { high: "High", low: "Low", abnormal: "Abnormal", normal: "Normal" };

function flagCell(flag) {
  if (!flag) return el("td", { class: "flag" }, "–");
  const symbol = { high: "▲ ", low: "▼ ", abnormal: "! ", normal: "" }[flag.kind];
  return el("td", { class: `flag flag-${flag.kind}`, "data-flag": flag.kind }, `${symbol}${FLAG_LABEL[flag.kind]}`);
}

// ---------------------------------------------------------------- the table

function drawTable(tests) {
  const body = $("tests-body");
  body.replaceChildren();
  for (const t of tests) {
    const selected = state.selected === t.key;
    const button = el("button", {
      type: "button",
      class: "test-select",
      "aria-pressed": selected ? "true" : "false",
      "aria-controls": "chart-panel",
      onclick: () => select(t.key, { scroll: true }),
    }, t.name);
    const row = el("tr", { dataset: { code: t.key, count: String(t.results.length) }, class: selected ? "selected" : null },
      el("th", { scope: "row" }, button, t.loinc ? el("span", { class: "loinc muted" }, ` LOINC ${t.loinc}`) : null),
      el("td", { class: "latest" }, t.latest.display),
      el("td", { class: "date" }, formatDate(t.latest.date)),
      el("td", { class: "range" }, rangeText(t.range)),
      flagCell(t.flag),
      el("td", { class: "num count" }, String(t.results.length)),
    );
    row.addEventListener("click", (event) => { if (event.target === row || event.target.tagName === "TD") select(t.key, { scroll: true }); });
    body.append(row);
  }
  show("tests", tests.length > 0);
}

function select(key, { scroll = false } = {}) {
  state.selected = key;
  for (const row of $("tests-body").rows) {
    const on = row.dataset.code === key;
    row.classList.toggle("selected", on);
    row.querySelector(".test-select").setAttribute("aria-pressed", on ? "true" : "false");
  }
  drawChart();
  if (scroll) $("chart-panel").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

// ---------------------------------------------------------------- the chart

/** About `count` round tick values covering [min, max]. */
function niceTicks(min, max, count = 5) {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
  return ticks;
}

/** Date ticks: years, quarters or months, whichever gives a handful. */
function dateTicks(t0, t1, maxTicks) {
  const years = (t1 - t0) / (365.25 * 864e5);
  const ticks = [];
  const start = new Date(t0);
  if (years > 2) {
    const every = Math.max(1, Math.ceil(years / maxTicks));
    for (let y = start.getFullYear() + 1; ; y += every) {
      const t = new Date(y, 0, 1).getTime();
      if (t > t1) break;
      ticks.push({ t, label: String(y) });
    }
  } else {
    const months = Math.max(1, Math.ceil((years * 12) / maxTicks));
    const fmt = new Intl.DateTimeFormat(undefined, { month: "short", year: "2-digit" });
    for (let d = new Date(start.getFullYear(), start.getMonth() + 1, 1); d.getTime() <= t1; d = new Date(d.getFullYear(), d.getMonth() + months, 1)) {
      ticks.push({ t: d.getTime(), label: fmt.format(d) });
    }
  }
  return ticks;
}

function drawChart() {
  const t = state.tests.find((x) => x.key === state.selected);
  const host = $("chart");
  host.replaceChildren();
  $("tooltip").hidden = true;
  if (!t) { show("chart-panel", false); return; }
  show("chart-panel");
  $("chart-title").textContent = t.name;
  const unit = formatUnit(t.unit);
  $("chart-subtitle").textContent = [
    t.loinc ? `LOINC ${t.loinc}` : null,
    `${t.results.length} result${t.results.length === 1 ? "" : "s"}`,
    t.results.length ? `${formatDate(t.results[0].date)} – ${formatDate(t.latest.date)}` : null,
    unit ? `values in ${unit}` : null,
  ].filter(Boolean).join(" · ");
  $("chart-note").textContent = t.range
    ? t.range.source === "typical" ? `Shaded band: typical adult range ${rangeText({ ...t.range, source: "lab" })} (the lab sent no range for these results).` : `Shaded band: the lab's reference range ${rangeText(t.range)}.`
    : "No reference range is known for this test.";
  $("readout").textContent = "Hover or focus a point (Tab, then ← →) for its exact value and date.";

  const points = t.numeric;
  host.dataset.code = t.key;
  if (!points.length) {
    host.append(el("p", { class: "state" }, "These results have no numeric values to chart."));
    return;
  }
  const width = Math.max(300, Math.round(host.clientWidth || 640));
  const narrow = width < 520;
  const height = narrow ? 240 : 320;
  const m = { top: 16, right: 16, bottom: 34, left: narrow ? 48 : 60 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;

  let t0 = points[0].time;
  let t1 = points[points.length - 1].time;
  const padT = Math.max((t1 - t0) * 0.04, 15 * 864e5);
  t0 -= padT; t1 += padT;
  const values = points.map((p) => p.value);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  let v0 = lo;
  let v1 = hi;
  // The range's bounds join the scale when they are near the values (the nearest one always,
  // so the band's edge shows); a far bound is left out so the values keep their detail.
  const reach = Math.max(hi - lo, Math.abs(hi) * 0.15);
  const bounds = [t.range?.low, t.range?.high].filter((b) => b !== undefined);
  const nearest = bounds.length ? bounds.reduce((a, b) => (Math.min(Math.abs(a - lo), Math.abs(a - hi)) <= Math.min(Math.abs(b - lo), Math.abs(b - hi)) ? a : b)) : undefined;
  for (const b of bounds) {
    if (b === nearest || (b >= lo - reach && b <= hi + reach)) {
      v0 = Math.min(v0, b);
      v1 = Math.max(v1, b);
    }
  }
  const padV = (v1 - v0) * 0.12 || Math.abs(v1) * 0.1 || 1;
  v0 -= padV; v1 += padV;
  if (lo >= 0 && v0 < 0) v0 = 0;
  const yTicks = niceTicks(v0, v1, narrow ? 4 : 6);
  v0 = Math.min(v0, yTicks[0]);
  v1 = Math.max(v1, yTicks[yTicks.length - 1]);

  const x = (time) => m.left + ((time - t0) / (t1 - t0)) * w;
  const y = (v) => m.top + h - ((v - v0) / (v1 - v0)) * h;
  const chart = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, class: "trend", role: "group",
    "aria-label": `Trend of ${t.name}${unit ? ` in ${unit}` : ""}, ${points.length} points`,
  });
  chart.append(svg("title", {}, `Trend of ${t.name}`));
  const clip = `plot-${Math.random().toString(36).slice(2)}`;
  chart.append(svg("defs", {}, svg("clipPath", { id: clip }, svg("rect", { x: m.left, y: m.top, width: w, height: h }))));

  // Reference range band.
  if (t.range && (t.range.low !== undefined || t.range.high !== undefined)) {
    const top = y(t.range.high ?? v1);
    const bottom = y(t.range.low ?? v0);
    chart.append(svg("rect", { class: `band band-${t.range.source}`, x: m.left, y: top, width: w, height: Math.max(0, bottom - top), "clip-path": `url(#${clip})` },
      svg("title", {}, `Reference range: ${rangeText(t.range)}`)));
  }
  // Grid and y axis.
  const yAxis = svg("g", { class: "axis axis-y" });
  for (const v of yTicks) {
    yAxis.append(svg("line", { class: "grid", x1: m.left, x2: m.left + w, y1: y(v), y2: y(v) }));
    yAxis.append(svg("text", { x: m.left - 6, y: y(v), dy: "0.32em", "text-anchor": "end" }, formatNumber(v)));
  }
  chart.append(yAxis);
  if (unit) chart.append(svg("text", { class: "unit", transform: `translate(12 ${m.top + h / 2}) rotate(-90)`, "text-anchor": "middle" }, unit));
  // x axis.
  const xAxis = svg("g", { class: "axis axis-x" });
  xAxis.append(svg("line", { class: "baseline", x1: m.left, x2: m.left + w, y1: m.top + h, y2: m.top + h }));
  let xTicks = dateTicks(t0, t1, narrow ? 4 : 8);
  if (xTicks.length < 2) xTicks = [...new Map(points.map((p) => [formatDate(p.date), p.time])).entries()].slice(0, narrow ? 3 : 6).map(([label, time]) => ({ t: time, label }));
  for (const tick of xTicks) {
    xAxis.append(svg("line", { class: "tick", x1: x(tick.t), x2: x(tick.t), y1: m.top + h, y2: m.top + h + 5 }));
    xAxis.append(svg("text", { x: x(tick.t), y: m.top + h + 18, "text-anchor": "middle" }, tick.label));
  }
  chart.append(xAxis);
  // The line and the points.
  chart.append(svg("polyline", { class: "line", points: points.map((p) => `${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ") }));
  const group = svg("g", { class: "points" });
  points.forEach((p, i) => {
    const flag = flagOf(p, p.range ?? t.range);
    const label = `${withUnit(formatNumber(p.value), p.unit)} on ${formatDate(p.date, true)}${flag && flag.kind !== "normal" ? ` (${FLAG_LABEL[flag.kind].toLowerCase()})` : ""}`;
    const point = svg("circle", {
      class: `point${flag ? ` point-${flag.kind}` : ""}`,
      cx: x(p.time).toFixed(1), cy: y(p.value).toFixed(1), r: narrow ? 5 : 5.5,
      tabindex: "0", role: "img", "aria-label": label,
      "data-value": String(p.value), "data-date": p.date, "data-unit": p.unit, "data-id": p.id, "data-index": String(i),
    }, svg("title", {}, label));
    const on = () => readout(point, label);
    point.addEventListener("mouseenter", on);
    point.addEventListener("focus", on);
    point.addEventListener("mouseleave", () => { if (document.activeElement !== point) $("tooltip").hidden = true; });
    point.addEventListener("blur", () => { $("tooltip").hidden = true; });
    point.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, Home: -Infinity, End: Infinity }[event.key];
      if (step === undefined) return;
      event.preventDefault();
      const all = [...group.querySelectorAll("circle")];
      const next = Math.min(all.length - 1, Math.max(0, i + step));
      all[next].focus();
    });
    group.append(point);
  });
  chart.append(group);
  host.append(chart);
}

/** The exact value and date of a point, next to it and in the live readout. */
function readout(point, label) {
  $("readout").textContent = label;
  const tip = $("tooltip");
  tip.textContent = label;
  tip.hidden = false;
  const host = $("chart-panel").getBoundingClientRect();
  const box = point.getBoundingClientRect();
  const left = Math.min(Math.max(box.left + box.width / 2 - host.left, 70), host.width - 70);
  tip.style.left = `${left}px`;
  tip.style.top = `${box.top - host.top - 8}px`;
}

// ---------------------------------------------------------------- loading a category

async function load(category) {
  state.category = category;
  for (const tab of document.querySelectorAll(".tabs [role=tab]")) {
    const on = tab.dataset.category === category;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    if (on) $("panel").setAttribute("aria-labelledby", tab.id);
  }
  const { label, empty } = CATEGORIES[category];
  $("panel-status").textContent = `Loading ${label}…`;
  $("panel-status").className = "state loading";
  show("panel-status");
  show("tests", false);
  show("chart-panel", false);
  $("panel").dataset.state = "loading";
  let observations;
  try {
    state.loads[category] ??= state.client.patient.request(`Observation?category=${category}&_count=200`, { pageLimit: 0, flat: true });
    observations = await state.loads[category];
  } catch (e) {
    delete state.loads[category];
    if (state.category !== category) return;
    $("panel").dataset.state = "error";
    const { title, text } = explain(e);
    $("panel-status").textContent = `${title}. ${text}`;
    $("panel-status").className = "state state-error";
    return;
  }
  if (state.category !== category) return;
  state.tests = groupTests(observations ?? []);
  if (!state.tests.some((t) => t.key === state.selected)) {
    // Start with the test that has the most results to chart (among equals, a common one).
    const common = (t) => { const i = Object.keys(TYPICAL).indexOf(t.loinc); return i < 0 ? Infinity : i; };
    const best = [...state.tests].sort((a, b) => b.numeric.length - a.numeric.length || common(a) - common(b) || b.latest.time - a.latest.time)[0];
    state.selected = best?.key ?? null;
  }
  $("panel").dataset.state = state.tests.length ? "ready" : "empty";
  if (!state.tests.length) {
    $("panel-status").textContent = empty;
    $("panel-status").className = "state state-empty";
    drawTable([]);
    drawChart();
    return;
  }
  const count = state.tests.reduce((n, t) => n + t.results.length, 0);
  $("tests-caption").textContent = `${state.tests.length} tests, ${count} results (select a test to see its trend)`;
  show("panel-status", false);
  drawTable(state.tests);
  drawChart();
}

function setupTabs() {
  const tabs = [...document.querySelectorAll(".tabs [role=tab]")];
  for (const [i, tab] of tabs.entries()) {
    tab.addEventListener("click", () => { if (state.category !== tab.dataset.category) { state.selected = null; load(tab.dataset.category); } });
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      next.focus();
      next.click();
    });
  }
}

// ---------------------------------------------------------------- style from the EHR

/** SMART's style document (`smart_style_url`), as CSS custom properties, when it can be read. */
async function applyStyle(url) {
  if (!url) return;
  try {
    const res = await fetch(url, { credentials: "omit" });
    if (!res.ok) return;
    const style = await res.json();
    const map = {
      color_background: "--bg", color_text: "--text", color_highlight: "--accent", color_error: "--high",
      color_success: "--ok", dim_border_radius: "--radius", font_family_body: "--font",
    };
    for (const [key, prop] of Object.entries(map)) {
      const value = style[key];
      if (typeof value === "string" && /^[#\w\s(),.%'"-]{1,80}$/.test(value)) document.documentElement.style.setProperty(prop, value);
    }
  } catch {
    // Another origin's style may be out of this page's reach (CSP, CORS): keep our own.
  }
}

// ---------------------------------------------------------------- start

async function main() {
  let client;
  try {
    client = await SMART.ready();
  } catch (e) {
    fail(e);
    return;
  }
  state.client = client;
  window.labViewer = { client, state };
  applyStyle(client.smartStyleUrl);
  $("sign-out").addEventListener("click", async () => {
    $("sign-out").disabled = true;
    try { await client.logout(); } catch { /* the session is forgotten either way */ }
    fail({ code: "no_session" });
    $("problem-title").textContent = "You are signed out";
    show("banner", false);
    show("user", false);
    show("sign-out", false);
  });
  show("sign-out");
  if (client.user.fhirUser) {
    const who = { Patient: "the patient", Practitioner: "a practitioner", RelatedPerson: "a related person" }[client.user.resourceType] ?? "a user";
    $("user").textContent = `Signed in as ${who}`;
    show("user");
  }
  if (!client.patient.id) {
    fail({ code: "no_context" });
    return;
  }
  $("status").textContent = "Loading the patient…";
  try {
    const patient = await client.patient.read();
    if (client.needPatientBanner) drawBanner(patient);
    document.title = `Lab Viewer: ${humanName(patient)}`;
  } catch (e) {
    fail(e);
    return;
  }
  show("status", false);
  show("results");
  setupTabs();
  await load("laboratory");
  addEventListener("resize", () => { clearTimeout(main.resize); main.resize = setTimeout(drawChart, 150); });
}

main();
