// Lab Viewer's launch page (its registered launch_uri). An EHR opens it with `?iss=…&launch=…`
// (EHR launch); opened with `?iss=…` alone it is a standalone launch (the server asks who the
// patient is). Everything SMART goes through the SDK's public API.
import * as SMART from "/sdk/smart-edge.js";

// `launch` is added by the SDK when the EHR passed one.
const SCOPE = "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs";
const here = new URLSearchParams(location.search);

function problem(text) {
  document.getElementById("status").hidden = true;
  document.getElementById("problem-text").textContent = text;
  const standalone = document.getElementById("standalone");
  standalone.href = `launch.html?${new URLSearchParams({ iss: `${location.origin}/fhir` })}`;
  document.getElementById("problem").hidden = false;
}

if (!here.has("iss")) {
  problem("This page is opened by an EHR, which tells it which FHIR server to use. You can also start Lab Viewer yourself against this server: you will sign in and choose a patient.");
} else {
  try {
    await SMART.authorize({ clientId: "lab-viewer", scope: SCOPE, redirectUri: "./" });
  } catch (e) {
    const why = e?.code === "network_error" || e?.code === "discovery_failed"
      ? `The FHIR server ${here.get("iss")} cannot be reached or does not speak SMART (${e.message}).`
      : `${e?.message ?? e}${e?.code ? ` (${e.code})` : ""}`;
    problem(why);
  }
}
