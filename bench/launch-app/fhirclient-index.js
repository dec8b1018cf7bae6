// The redirect page with fhirclient.js 2.6.3: FHIR.oauth2.ready(), then client.patient.read();
// the same marker as ours-index.js.
function done(result) {
  // What this page fetched (resource timing, ms since its navigation start), for the breakdown.
  const fetched = performance.getEntriesByType("resource").map((e) => ({ url: e.name, start: e.startTime, end: e.responseEnd }));
  window.bench = { ...result, t0: Number(sessionStorage.getItem("bench-t0")), tRedirect: performance.timeOrigin, fetched };
  const status = document.getElementById("status");
  if (status) status.textContent = result.error ? `error: ${result.error}` : "done";
}
FHIR.oauth2.ready()
  .then((client) => client.patient.read().then((patient) => {
    const t1 = performance.timeOrigin + performance.now();
    done({ t1, patientId: client.patient.id, resource: `${patient.resourceType}/${patient.id}`, href: location.href });
  }))
  .catch((e) => done({ error: String(e?.message ?? e) }));
