// A re-run on the release another environment runs, in the browser: production's
// Quarry (its workers on v1, the control plane over moto's stacks) has staging's own
// Quarry as its peer ([control.peers.staging]); staging runs v2, whose engine perturbs
// every float. An analyst's job page offers "Re-run on release … (runs in staging)";
// the re-run runs in staging, its page says so, and shows the first differing rows
// against the original, checked against means computed here without polars.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import {
  startQuarry, startMoto, stackEnvironments, api, launchBrowser, watchErrors, waitForHydration, signIn, screenshot,
  meanByCategory, until,
} from "./harness.mjs";

const V1 = `registry.example/quarry@sha256:${"1".repeat(64)}`;
const V2 = `registry.example/quarry@sha256:${"2".repeat(64)}`;
const PASSWORD = "a long analyst password";
const WAIT_MS = 240_000;

let moto;
let envDir;
let staging;
let production;
let browser;

before(async () => {
  moto = await startMoto();
  envDir = stackEnvironments(moto);
  staging = await startQuarry({ QUARRY_WORKER__RELEASE: V2, QUARRY_TEST_FAULT: "perturb_floats" });
  const peerToken = staging.addUser("forwarder", "analyst", PASSWORD);
  production = await startQuarry({
    ...moto.env,
    QUARRY_CONTROL__ENVIRONMENTS_DIR: envDir,
    QUARRY_CONTROL__POLL_MS: "200",
    QUARRY_CONTROL__GATE_POLL_MS: "200",
    QUARRY_WORKER__RELEASE: V1,
    QUARRY_CONTROL__PEERS__STAGING__URL: staging.base,
    QUARRY_CONTROL__PEERS__STAGING__TOKEN: peerToken,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await production?.stop();
  await staging?.stop();
  await moto?.stop();
  if (envDir) rmSync(envDir, { recursive: true, force: true });
});

test("an analyst re-runs a job on the release staging runs, and reads the differences", async () => {
  const olga = production.addUser("olga", "operator", PASSWORD);
  const ana = production.addUser("ana", "analyst", PASSWORD);
  const { job, means } = await meanByCategory(production.base, ana, "regional");
  // Staging runs v2, as its stack says.
  const deployed = await api(production.base, olga, "POST", "/api/v1/environments/staging/deploy", { artifact: V2, commit: "c0ffee" });
  assert.equal(deployed.status, 202, JSON.stringify(deployed.body));
  await until("staging's release to finish", async () => {
    const { body } = await api(production.base, olga, "GET", "/api/v1/environments/staging/releases");
    return body[0] && body[0].outcome !== "in_progress";
  });

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await signIn(page, production.base, "ana", PASSWORD);
  await page.goto(`${production.base}/jobs/${job.id}`);
  await waitForHydration(page);
  const elsewhere = page.getByTestId("rerun-elsewhere");
  await elsewhere.waitFor();
  assert.match(await elsewhere.innerText(), /\(runs in staging\)$/);
  await elsewhere.click();
  await page.waitForURL((url) => url.pathname.startsWith("/jobs/") && !url.pathname.endsWith(job.id));
  const rerunId = new URL(page.url()).pathname.split("/").pop();
  await waitForHydration(page);
  assert.equal(await page.getByTestId("rerun-environment").innerText(), "staging");
  assert.equal(await page.getByTestId("ran-in").innerText(), "staging");
  assert.match(await page.getByTestId("attempts-elsewhere").innerText(), /its attempts are in staging's records/);
  // Its result comes back from staging and the page compares it with the original's.
  const differs = page.getByTestId("rerun-differs");
  await differs.waitFor({ timeout: WAIT_MS });
  const check = page.getByTestId("reruns");
  assert.match(await check.getByTestId("differences").innerText(), /4 of 4 rows differ/);
  const actual = await check.getByTestId("actual-row").evaluateAll((rows) =>
    rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)));
  assert.equal(actual.length, 4);
  const near = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
  means.forEach(([category, mean], i) => {
    assert.deepEqual(actual[i].slice(0, 2), ["candidate", category], JSON.stringify(actual[i]));
    assert.ok(near(Number(actual[i][2]), mean * (1 + 1e-6)), `${category}: ${actual[i][2]}`);
  });
  const { body: rerun } = await api(production.base, ana, "GET", `/api/v1/jobs/${rerunId}`);
  assert.equal(rerun.environment, "staging");
  assert.equal(rerun.provenance.release, V2);
  await screenshot(page, "rerun-in-staging");
  assert.deepEqual(errors, []);
  await ctx.close();
});
