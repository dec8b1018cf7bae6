// EHR launch with the smart-edge SDK, imported from the server under test (the app server
// writes its URL in place of __SDK__). The launch page's navigation start is kept for the
// redirect page, which measures the whole launch against it.
import * as SMART from "__SDK__";

sessionStorage.setItem("bench-t0", String(performance.timeOrigin));
try {
  await SMART.authorize({ clientId: "bench-launch", scope: "launch openid fhirUser patient/*.rs", redirectUri: "ours-index.html" });
} catch (e) {
  const status = document.getElementById("status");
  if (status) status.textContent = `error: ${e?.code ?? ""} ${e?.message ?? e}`;
  window.bench = { error: `${e?.code ?? ""} ${e?.message ?? e}` };
}
