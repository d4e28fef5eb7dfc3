// The lead's System page across environments: a local `quarry up` shows staging's and
// production's series, read from CloudWatch (moto's server, seeded with the AWS CLI
// for each environment's `Environment` dimension), with the same graphs as its own.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startQuarry, startMoto, launchBrowser, watchErrors, waitForHydration, signIn, screenshot } from "./harness.mjs";

let moto;
let quarry;
let browser;
const PASSWORD = "lee's long password";
// Minutes of staging's history seeded, one datum per metric per minute.
const MINUTES = 12;

// What an environment's orchestrator publishes, one datum per minute for the last
// `minutes` minutes; `scale` tells environments apart.
function seed(environment, minutes, scale) {
  const now = Date.now();
  const data = [];
  for (let i = minutes - 1; i >= 0; i--) {
    const at = new Date(now - i * 60_000).toISOString();
    const wave = Math.round(scale * (3 + 2 * Math.sin(i / 2)));
    const values = {
      queue_visible: wave,
      queue_in_flight: Math.min(wave, 2 * scale),
      queue_dead: i === 3 ? 1 : 0,
      oldest_job_age_seconds: 5 * wave,
      workers_running: Math.ceil(wave / 2),
      workers_starting: i % 4 === 0 ? 1 : 0,
      jobs_succeeded: wave + 1,
      jobs_failed: i === 5 ? 1 : 0,
      job_duration_p50_seconds: 20 + wave,
      job_duration_p95_seconds: 40 + 3 * wave,
      worker_seconds: 60 * Math.ceil(wave / 2),
    };
    for (const [name, value] of Object.entries(values)) {
      data.push({
        MetricName: name,
        Dimensions: [{ Name: "Environment", Value: environment }],
        Timestamp: at,
        Value: value,
        Unit: name.endsWith("_seconds") ? "Seconds" : "Count",
      });
    }
  }
  // PutMetricData takes at most 1000 values per call.
  for (let i = 0; i < data.length; i += 500) {
    moto.aws(["cloudwatch", "put-metric-data", "--namespace", "Quarry", "--metric-data", JSON.stringify(data.slice(i, i + 500))]);
  }
}

before(async () => {
  moto = await startMoto();
  seed("staging", MINUTES, 1);
  seed("production", 3, 4);
  quarry = await startQuarry(moto.env);
  quarry.addUser("lee", "lead", PASSWORD);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await quarry?.stop();
  await moto?.stop();
});

test("a lead sees the System page for staging, with CloudWatch data points from moto", async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await signIn(page, quarry.base, "lee", PASSWORD);
  await page.goto(`${quarry.base}/system?env=staging&range=15m`);
  await waitForHydration(page);

  const picker = page.getByTestId("environments");
  assert.deepEqual(await picker.locator("a").allInnerTexts(), ["local", "staging", "production"]);
  assert.equal(await page.getByTestId("env-staging").getAttribute("aria-current"), "page");
  assert.match(await page.getByTestId("origin").innerText(), /Environment staging · CloudWatch, us-east-1/);
  assert.equal(await page.getByTestId("metrics-unavailable").count(), 0);

  const charts = page.getByTestId("line-chart");
  assert.equal(await charts.count(), 6, "the same six graphs as local");
  const titles = await page.locator("figure.line-chart figcaption").allInnerTexts();
  for (const t of ["Queue depth", "Oldest queued job", "Workers", "Jobs finished", "Job duration", "Worker time used"]) {
    assert.ok(titles.some((x) => x.startsWith(t)), `${t} in ${titles}`);
  }
  // Every graph has staging's points: one per seeded minute on each line that
  // CloudWatch holds (queue depth has three lines).
  for (let i = 0; i < 6; i++) {
    const points = Number(await charts.nth(i).getAttribute("data-points"));
    assert.ok(points >= MINUTES - 1, `${titles[i]}: ${points} points`);
  }
  assert.ok((await page.locator("[data-testid=line-chart] circle[data-testid=point]").count()) > 6 * (MINUTES - 1));
  await screenshot(page, "system-staging");

  // Production is one click away, in the same page (client-side after hydration).
  const stagingPoints = Number(await charts.first().getAttribute("data-points"));
  await page.getByTestId("env-production").click();
  await page.waitForURL(/env=production/);
  await page.locator("[data-testid=origin][data-environment=production]").waitFor();
  assert.equal(await page.getByTestId("env-production").getAttribute("aria-current"), "page");
  const productionPoints = Number(await charts.first().getAttribute("data-points"));
  assert.ok(productionPoints > 0 && productionPoints < stagingPoints, `production: ${productionPoints}, staging: ${stagingPoints}`);

  // The range keeps the environment.
  await page.getByTestId("ranges").getByText("1 hour").click();
  await page.waitForURL(/env=production&range=1h/);

  assert.deepEqual(errors, [], "no errors in the browser console");

  // An environment that does not exist says so (with a 404), and offers the way back.
  const unknown = await page.goto(`${quarry.base}/system?env=qa`);
  assert.equal(unknown.status(), 404);
  assert.match(await page.locator("[role=alert]").innerText(), /no environment `qa`: use one of local, staging, production/);
  await page.getByTestId("env-local").click();
  await page.locator("[data-testid=origin][data-environment=local]").waitFor();
  // This server's own environment shows the pre-scaler (off on the embedded default)
  // with the orchestrator's last decision and the week it learned.
  const prescale = page.getByTestId("prescale-state");
  await prescale.waitFor();
  assert.equal(await prescale.getAttribute("data-enabled"), "false");
  assert.match(await prescale.innerText(), /^Off \(fleet\.prescale\.enabled\)/);
  assert.match(await page.getByTestId("last-decision").innerText(), /^Last decision: /);
  assert.equal(
    (await page.getByTestId("prescale-week").count()) + (await page.getByTestId("prescale-empty").count()),
    1,
    "the learned week, or a word that there is no history yet",
  );
  await page.close();
});
