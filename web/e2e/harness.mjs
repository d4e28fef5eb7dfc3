// Shared helpers for the browser tests: start the real `quarry up` on port 0 with a
// temporary data directory, and launch Debian's Chromium through playwright-core.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export async function startQuarry(extraEnv = {}) {
  const bin = process.env.QUARRY_BIN;
  if (!bin) throw new Error("QUARRY_BIN is not set: run these through `cargo xtask test`");
  const dataDir = mkdtempSync(join(tmpdir(), "quarry-e2e-"));
  const child = spawn(bin, ["up"], {
    env: {
      ...process.env,
      QUARRY_LISTEN: "127.0.0.1:0",
      QUARRY_DATA_DIR: dataDir,
      QUARRY_LOG: "warn",
      ...extraEnv,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("quarry did not start within 60 s")), 60_000);
    child.on("exit", (code) => reject(new Error(`quarry exited early with ${code}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/^Quarry is up at (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  const adminToken = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
  return {
    base,
    adminToken,
    dataDir,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// Collects uncaught page errors and console errors, which is how a broken WASM bundle shows.
export function watchErrors(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return errors;
}

export async function waitForHydration(page) {
  await page.waitForSelector("body[data-hydrated='true']", { timeout: 30_000 });
}
