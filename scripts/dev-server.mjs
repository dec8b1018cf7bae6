// Starts `wrangler dev` on the prebuilt Worker (.wrangler/prebuilt.toml, written by
// scripts/prebuilt-config.sh) and waits until it answers. Used by `npm start` and by the
// end-to-end tests, so both run the Worker exactly the same way.
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * @param {{port?: number, persistTo: string, envFile?: string, vars?: Record<string,string>, stdio?: "inherit"|"pipe"}} options
 * @returns {Promise<{url: string, child: import("node:child_process").ChildProcess, output: () => string, stop: () => Promise<void>}>}
 */
export async function startDevServer({ port = 8787, persistTo, envFile, vars = {}, stdio = "pipe" }) {
  const args = [
    "dev",
    "--config", join(ROOT, ".wrangler", "prebuilt.toml"),
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--persist-to", persistTo,
    "--show-interactive-dev-session=false",
    "--live-reload=false",
  ];
  if (envFile) args.push("--env-file", envFile);
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  const child = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), args, {
    cwd: ROOT,
    detached: true, // its own process group, so stop() ends workerd too
    stdio: stdio === "inherit" ? ["ignore", "inherit", "inherit"] : ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", CI: "true" },
  });
  let log = "";
  child.stdout?.on("data", (d) => { log += d; });
  child.stderr?.on("data", (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      try { process.kill(-child.pid, "SIGTERM"); } catch { resolve(); }
      setTimeout(() => { try { process.kill(-child.pid, "SIGKILL"); } catch {} }, 5000).unref();
    });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${log}`);
    try {
      const res = await fetch(`${url}/health`);
      if (res.ok) return { url, child, output: () => log, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  throw new Error(`wrangler dev did not answer on ${url} within 60 s:\n${log}`);
}
