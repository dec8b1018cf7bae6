// What the benchmarks read about the workerd process the Miniflare API starts: its pid and its
// CPU time (user + system, from /proc; CLK_TCK is 100 on Linux).
import { readFileSync, readdirSync } from "node:fs";

const TICK_MS = 10;

export function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime + stime
}

/** The one workerd child of this process. */
export function workerdPid() {
  const candidates = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).filter((pid) => {
    try {
      const ppid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[1]);
      return ppid === process.pid && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("workerd");
    } catch {
      return false;
    }
  });
  if (candidates.length !== 1) throw new Error(`expected one workerd child, found ${candidates}`);
  return Number(candidates[0]);
}
