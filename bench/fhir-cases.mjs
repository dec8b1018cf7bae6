// The FHIR requests the benchmarks send (bench/fhir.mjs side by side, bench/profile.mjs under
// the profiler), each a function returning the fetch's promise.
import { NED } from "../tests/helpers/fixtures.mjs";

/** `w`: the started Worker; `auth`: the `Authorization` header of a patient/*.cruds token. */
export function fhirCases(w, auth) {
  return {
    "ceiling: bare DO point read": () => fetch(`${w.url}/_dev/do-read?partition=patient/${NED}&type=Patient&id=${NED}`),
    "read by id (Patient)": () => fetch(`${w.url}/fhir/Patient/${NED}`, { headers: auth }),
    "patient-scoped Observation search": () => fetch(`${w.url}/fhir/Observation?code=http://loinc.org|8302-2&_sort=-date`, { headers: auth }),
    // What a lab viewer sends (the issue's common app queries): every lab result newest
    // first, one page; and a date window.
    "lab results, newest first": () => fetch(`${w.url}/fhir/Observation?category=laboratory&_sort=-date&_count=50`, { headers: auth }),
    "Observation date window": () => fetch(`${w.url}/fhir/Observation?date=ge2020-01-01&_count=50`, { headers: auth }),
    "create (Observation)": () => fetch(`${w.url}/fhir/Observation`, {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/fhir+json", Prefer: "return=minimal" },
      body: JSON.stringify({ resourceType: "Observation", status: "final", code: { coding: [{ system: "http://loinc.org", code: "8867-4" }] }, subject: { reference: `Patient/${NED}` }, effectiveDateTime: "2026-11-29T10:00:00Z", valueQuantity: { value: 72, unit: "/min" } }),
    }),
  };
}
