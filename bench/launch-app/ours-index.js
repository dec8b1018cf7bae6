// The redirect page with the smart-edge SDK: ready(), then patient.read(); the time (epoch ms,
// high resolution) is taken as soon as the patient is read and published on window.bench.
import * as SMART from "__SDK__";

function done(result) {
  // What this page fetched (resource timing, ms since its navigation start), for the breakdown.
  const fetched = performance.getEntriesByType("resource").map((e) => ({ url: e.name, start: e.startTime, end: e.responseEnd }));
  window.bench = { ...result, t0: Number(sessionStorage.getItem("bench-t0")), tRedirect: performance.timeOrigin, fetched };
  const status = document.getElementById("status");
  if (status) status.textContent = result.error ? `error: ${result.error}` : "done";
}
try {
  const client = await SMART.ready();
  const patient = await client.patient.read();
  const t1 = performance.timeOrigin + performance.now();
  done({ t1, patientId: client.patient.id, resource: `${patient.resourceType}/${patient.id}`, href: location.href });
} catch (e) {
  done({ error: `${e?.code ?? ""} ${e?.message ?? e}` });
}
