// The Worker's JavaScript entry (bundled by scripts/build-worker.sh into worker/build/index.js).
//
// wasm-bindgen turns the Rust crate into `smart_edge.js` + `smart_edge_bg.wasm`; this file hands
// workerd what it asks for: a default export with `fetch`, and the Durable Object classes named
// in wrangler.toml. It also restarts the wasm instance after a Rust panic or a trap: its memory
// is then undefined, so the next call resets the instance (wasm-bindgen's
// `--experimental-reset-state-function`) and Durable Objects rebuild their Rust half, instead of
// one bad request poisoning every later one in the isolate.
import { WorkerEntrypoint, DurableObject } from "cloudflare:workers";
import * as rust from "./smart_edge.js";

// Shared with the `worker` crate's panic hook, which sets `criticalError`.
const state = rust.__worker_init_state();
Error.stackTraceLimit = 100;

function restartIfBroken() {
  if (!state.criticalError) return;
  console.error("smart-edge: restarting the wasm instance after a panic");
  rust.__wbg_reset_state();
  state.criticalError = false;
  state.instanceId++;
}

function noteTrap(error) {
  if (error instanceof WebAssembly.RuntimeError) state.criticalError = true;
}

addEventListener("error", (event) => noteTrap(event.error));

async function guarded(call) {
  restartIfBroken();
  try {
    return await call();
  } catch (error) {
    noteTrap(error);
    throw error;
  }
}

export default class SmartEdge extends WorkerEntrypoint {
  fetch(request) {
    // The worker crate reads `request.cf` into every Request it wraps, and workerd builds that
    // object from JSON on first access (≈0.03 ms per request); the Worker never uses it.
    Object.defineProperty(request, "cf", { value: undefined });
    return guarded(() => rust.fetch(request, this.env, this.ctx));
  }
}

// A Rust Durable Object class behind a JavaScript one that rebuilds the Rust object when the
// wasm instance it lives in was restarted. Every method of the Rust class (fetch, alarm, the
// WebSocket handlers, and `call`, the commands the Worker sends over JS RPC: see
// worker/src/durable/rpc.rs) is forwarded. It extends `DurableObject` because workerd lets
// stubs call methods only on classes that do.
function durableObject(Rust) {
  class DurableObjectShim extends DurableObject {
    #args;
    #object;
    #instance = -1;

    constructor(...args) {
      super(...args);
      this.#args = args;
      restartIfBroken();
      this.#current();
    }

    #current() {
      if (this.#instance !== state.instanceId) {
        try {
          this.#object = new Rust(...this.#args);
        } catch (error) {
          // A constructor that throws leaves the instance in an unknown state: restart it.
          state.criticalError = true;
          throw error;
        }
        this.#instance = state.instanceId;
      }
      return this.#object;
    }

    // Not a method: every public method of a Durable Object class can be called over RPC.
    #forward(name, args) {
      return guarded(() => this.#current()[name](...args));
    }

    static forward(shim, name, args) {
      return shim.#forward(name, args);
    }
  }
  const internal = new Set(["constructor", "free"]);
  for (const name of Object.getOwnPropertyNames(Rust.prototype)) {
    if (internal.has(name) || name.startsWith("__")) continue;
    DurableObjectShim.prototype[name] = function (...args) {
      return DurableObjectShim.forward(this, name, args);
    };
  }
  Object.defineProperty(DurableObjectShim, "name", { value: Rust.name });
  return DurableObjectShim;
}

// The classes wrangler.toml binds ([[durable_objects.bindings]] class_name).
export const KeyVault = durableObject(rust.KeyVault);
export const Grant = durableObject(rust.Grant);
export const Account = durableObject(rust.Account);
export const FhirPartition = durableObject(rust.FhirPartition);
export const AssertionLog = durableObject(rust.AssertionLog);
export const ExportJob = durableObject(rust.ExportJob);
