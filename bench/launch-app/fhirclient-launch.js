// EHR launch with fhirclient.js 2.6.3 (its browser build, node_modules/fhirclient/build/
// fhir-client.min.js, loaded before this script as the global FHIR). Same client, scopes and
// redirect handling as ours-launch.js.
sessionStorage.setItem("bench-t0", String(performance.timeOrigin));
FHIR.oauth2.authorize({ clientId: "bench-launch", scope: "launch openid fhirUser patient/*.rs", redirectUri: "fhirclient-index.html" })
  .catch((e) => {
    const status = document.getElementById("status");
    if (status) status.textContent = `error: ${e?.message ?? e}`;
    window.bench = { error: String(e?.message ?? e) };
  });
