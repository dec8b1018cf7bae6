// Uses only the SDK: SMART discovery against this server's FHIR base.
import { discover } from "/sdk/smart-edge.js";

const show = (id, text) => { document.getElementById(id).textContent = text; };

try {
  const config = await discover(`${location.origin}/fhir`);
  show("authorize-endpoint", config.authorize);
  show("token-endpoint", config.token);
  show("capabilities", config.capabilities.length ? config.capabilities.join(", ") : "(none yet)");
  show("sdk-status", "ready");
} catch (error) {
  show("sdk-status", `error: ${error.message ?? error}`);
}
