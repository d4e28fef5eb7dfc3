// Shared helpers for the browser tests: start the real `quarry up` on port 0 with a
// temporary data directory, and launch Debian's Chromium through playwright-core.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

// `quarry up` with `env`; resolves to the child and the URL it serves once it is up.
async function spawnUp(bin, env) {
  const child = spawn(bin, ["up"], {
    env,
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
  return { child, base };
}

async function stopChild(child) {
  child.kill("SIGTERM");
  await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
}

export async function startQuarry(extraEnv = {}) {
  const bin = process.env.QUARRY_BIN;
  if (!bin) throw new Error("QUARRY_BIN is not set: run these through `cargo xtask test`");
  const dataDir = mkdtempSync(join(tmpdir(), "quarry-e2e-"));
  let env = {
    ...process.env,
    QUARRY_LISTEN: "127.0.0.1:0",
    QUARRY_DATA_DIR: dataDir,
    QUARRY_LOG: "warn",
    ...extraEnv,
  };
  let { child, base } = await spawnUp(bin, env);
  const adminToken = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
  return {
    base,
    adminToken,
    dataDir,
    // `quarry user add NAME --role ROLE --password-stdin`; returns the user's API token.
    addUser(name, role, password) {
      const r = spawnSync(bin, ["user", "add", name, "--role", role, "--password-stdin"], {
        env,
        input: `${password}\n`,
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`user add ${name} failed: ${r.stderr}`);
      return r.stdout.trim();
    },
    // Stops the server and starts it again on the same data with `vars` changed (a
    // new release's workers, say). It listens on a new port: `base` changes, and
    // browser sessions must sign in again.
    async restart(vars) {
      await stopChild(child);
      env = { ...env, ...vars };
      ({ child, base } = await spawnUp(bin, env));
      this.base = base;
    },
    async stop() {
      await stopChild(child);
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
  // Name the URL of any failed request (the console message does not).
  page.on("response", (r) => {
    if (r.status() >= 400) errors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return errors;
}

export async function waitForHydration(page) {
  await page.waitForSelector("body[data-hydrated='true']", { timeout: 30_000 });
}

export async function signIn(page, base, name, password) {
  await page.goto(`${base}/login`);
  await page.fill("#name", name);
  await page.fill("#password", password);
  await page.click("[data-testid=password-form] button[type=submit]");
  await page.waitForURL(/\/datasets$/);
}

export async function signInWithToken(page, base, token) {
  await page.goto(`${base}/login`);
  await page.click("details.alt-signin summary");
  await page.fill("#token", token);
  await page.click("[data-testid=token-form] button[type=submit]");
  await page.waitForURL(/\/datasets$/);
}

// Every test leaves a picture of its last page in web/test-output/.
export const OUTPUT = new URL("../test-output/", import.meta.url).pathname;
export async function screenshot(page, name) {
  mkdirSync(OUTPUT, { recursive: true });
  await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
}

// A free loopback port (the kernel's choice; closed again before it is used).
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// moto's server (the AWS emulator) on a free loopback port, as tests/src/aws.rs starts
// it for the Rust tests: `env` points a `quarry` process (or the AWS CLI) at it, and
// `aws(args)` runs the AWS CLI against it and returns the parsed JSON (null when the
// command prints nothing). `cargo xtask test` names the server with QUARRY_MOTO_SERVER;
// the CLI is QUARRY_AWS_CLI or the `aws` beside it in the same virtualenv.
export async function startMoto() {
  const server = process.env.QUARRY_MOTO_SERVER;
  if (!server) throw new Error("QUARRY_MOTO_SERVER is not set: run these through `cargo xtask test`");
  const beside = join(dirname(server), "aws");
  const cli = process.env.QUARRY_AWS_CLI || (existsSync(beside) ? beside : "aws");
  const port = await freePort();
  const child = spawn(server, ["-H", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}`);
    try {
      await fetch(`${endpoint}/moto-api/`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`moto_server did not answer on ${endpoint} within 60 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const env = {
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
  };
  return {
    endpoint,
    env,
    aws(args) {
      const r = spawnSync(cli, [...args, "--output", "json", "--endpoint-url", endpoint], {
        env: { ...process.env, ...env, AWS_PAGER: "" },
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`aws ${args.join(" ")}: ${r.stderr || r.error}`);
      return r.stdout.trim() === "" ? null : JSON.parse(r.stdout);
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
    },
  };
}

// Both stack environments' files (from the repository's environments/) in a new
// directory, importing a network made in moto (a VPC with DNS hostnames, two public
// and two private subnets across two zones), as tests/tests/api/control.rs does.
// Returns the directory, for QUARRY_CONTROL__ENVIRONMENTS_DIR.
export function stackEnvironments(moto) {
  const vpc = moto.aws(["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16"]).Vpc.VpcId;
  moto.aws(["ec2", "modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-hostnames", '{"Value":true}']);
  const subnets = [0, 1, 2, 3].map((i) =>
    moto.aws([
      "ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", `10.0.${i + 1}.0/24`,
      "--availability-zone", `us-east-1${i % 2 === 0 ? "a" : "b"}`,
    ]).Subnet.SubnetId,
  );
  const imported = `mode = "import"\nvpc_id = "${vpc}"\npublic_subnets = ${JSON.stringify(subnets.slice(0, 2))}\nprivate_subnets = ${JSON.stringify(subnets.slice(2))}`;
  const dir = mkdtempSync(join(tmpdir(), "quarry-envs-"));
  const source = new URL("../../environments/", import.meta.url).pathname;
  for (const [env, cidr] of [["staging", "10.40.0.0/16"], ["production", "10.41.0.0/16"]]) {
    const text = readFileSync(join(source, `${env}.toml`), "utf8");
    const changed = text.replace(`mode = "create"\ncidr = "${cidr}"`, imported);
    if (!changed.includes(imported)) throw new Error(`${env}.toml's network section moved`);
    writeFileSync(join(dir, `${env}.toml`), changed);
  }
  return dir;
}

// A JSON call to the REST API with a bearer token; returns { status, body }.
export async function api(base, token, method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: r.status, body: parsed };
}

// Waits up to `ms` for `read()` to give something truthy; resolves to it.
export async function until(what, read, ms = 240_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await read();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Amounts by region over 40 generated rows, uploaded as dataset `name`, and the mean
// amount by category run on it to success. Resolves to the dataset, the job and the
// means computed here without polars, sorted by category: [[category, mean], …].
export async function meanByCategory(base, token, name) {
  let csv = "category,amount\n";
  const sums = new Map();
  for (let i = 0; i < 40; i++) {
    const category = ["north", "south", "east", "west"][i % 4];
    const amount = ((i * 37) % 101) + (i % 7) / 8;
    csv += `${category},${amount}\n`;
    const [sum, n] = sums.get(category) ?? [0, 0];
    sums.set(category, [sum + amount, n + 1]);
  }
  const means = [...sums].map(([k, [sum, n]]) => [k, sum / n]).sort(([a], [b]) => (a < b ? -1 : 1));
  const upload = await fetch(`${base}/api/v1/datasets?name=${name}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "text/csv" },
    body: csv,
  });
  if (upload.status !== 201) throw new Error(`upload: ${upload.status} ${await upload.text()}`);
  const dataset = await upload.json();
  const analysis = { kind: "aggregate", group_by: ["category"], aggregations: [{ column: "amount", op: "mean" }] };
  const { status, body: job } = await api(base, token, "POST", "/api/v1/jobs", { dataset_id: dataset.id, analysis });
  if (status !== 202) throw new Error(`submit: ${status} ${JSON.stringify(job)}`);
  await until("the job to succeed", async () => {
    const { body } = await api(base, token, "GET", `/api/v1/jobs/${job.id}`);
    if (body.status === "failed") throw new Error(`the job failed: ${JSON.stringify(body)}`);
    return body.status === "succeeded";
  });
  return { dataset, job, means };
}
