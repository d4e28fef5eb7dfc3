// The analyst's and lead's journeys in a real browser: sign in with a password, upload
// a CSV through the page, launch an aggregate from the form, watch it succeed live,
// read the chart and table, download the CSV; isolation between analysts; the lead's
// system page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { startQuarry, launchBrowser, watchErrors, waitForHydration, signIn, screenshot } from "./harness.mjs";

let quarry;
let browser;
let tokens = {};
const PASSWORD = { ana: "ana's long password", bea: "bea's long password", lee: "lee's long password" };
// Set by the first test, read by the isolation test.
let anaDatasetId;

before(async () => {
  quarry = await startQuarry({ QUARRY_FLEET__TICK_SECS: "1" });
  tokens.ana = quarry.addUser("ana", "analyst", PASSWORD.ana);
  tokens.bea = quarry.addUser("bea", "analyst", PASSWORD.bea);
  tokens.lee = quarry.addUser("lee", "lead", PASSWORD.lee);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await quarry?.stop();
});

// A small sales file with a string key, decimals and some missing amounts.
function salesCsv() {
  const regions = ["north", "south", "east", "west"];
  const lines = ["region,amount,units"];
  // MINSTD: exact in doubles, and every residue class mod 4 occurs.
  let seed = 7;
  const next = () => (seed = (seed * 48271) % 2147483647);
  for (let i = 0; i < 2000; i++) {
    const amount = i % 37 === 0 ? "" : ((next() % 100000) / 100).toFixed(2);
    lines.push(`${regions[next() % 4]},${amount},${next() % 13}`);
  }
  return lines.join("\n") + "\n";
}

// Mean amount by region by a plain fold over the text: independent of polars.
function meansByRegion(csv) {
  const sums = new Map();
  for (const line of csv.trim().split("\n").slice(1)) {
    const [region, amount] = line.split(",");
    if (amount === "") continue;
    const [s, n] = sums.get(region) ?? [0, 0];
    sums.set(region, [s + Number(amount), n + 1]);
  }
  return new Map([...sums].map(([k, [s, n]]) => [k, s / n]));
}

test("an analyst uploads, launches an aggregate, watches it succeed live and downloads it", async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await signIn(page, quarry.base, "ana", PASSWORD.ana);
  assert.match(await page.getByTestId("who").innerText(), /ana · analyst/);

  const csv = salesCsv();
  await page.setInputFiles("input[type=file]", { name: "sales.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await page.click("form.upload button[type=submit]");
  await page.waitForURL(/uploaded=sales/);
  await page.locator("tr[data-name='sales'] [data-testid=open]").click();
  await page.waitForURL(/\/datasets\/[0-9a-f-]+$/);
  anaDatasetId = page.url().split("/").pop();
  await page.getByTestId("preview").waitFor();
  assert.match(await page.getByTestId("preview").innerText(), /region[\s\S]*amount[\s\S]*float64/);

  // The form says what is missing before anything is sent.
  await waitForHydration(page);
  await page.getByTestId("launch").click();
  assert.match(await page.getByTestId("problems").innerText(), /group by/);

  await page.check("input[name=group_by][value=region]");
  await page.selectOption("[data-testid=agg-op-0]", "mean");
  const options = await page.locator("[data-testid=agg-column-0] option").allInnerTexts();
  assert.ok(!options.some((o) => o.startsWith("region")), `only numeric columns for a mean: ${options}`);
  await page.selectOption("[data-testid=agg-column-0]", "amount");
  await page.getByTestId("launch").click();
  await page.waitForURL(/\/jobs\/[0-9a-f-]+$/);

  // No reload from here: a marker on the window survives only if the page stays.
  await page.evaluate(() => (window.__stayed = true));
  await page.locator("[data-testid=job-status][data-status=succeeded]").waitFor({ timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__stayed), true, "the status changed without a reload");

  const expected = meansByRegion(csv);
  const bars = page.locator("[data-testid=bar-chart] g.bar");
  await bars.first().waitFor();
  assert.equal(await bars.count(), expected.size, "one bar per region");
  for (const bar of await bars.all()) {
    const label = await bar.getAttribute("data-label");
    const value = Number(await bar.getAttribute("data-value"));
    assert.ok(Math.abs(value - expected.get(label)) < 1e-9, `${label}: ${value} vs ${expected.get(label)}`);
  }
  const table = page.getByTestId("result-table");
  assert.equal(await table.locator("tbody tr").count(), expected.size);
  assert.match(await page.getByTestId("row-range").innerText(), /of 4/);

  // Sorting is done by the server, for the whole result.
  await table.getByRole("button", { name: /amount_mean/ }).click();
  await page.locator("th button", { hasText: "amount_mean ▲" }).waitFor();
  const sorted = (await table.locator("tbody tr td:first-child").allInnerTexts());
  const want = [...expected].sort((a, b) => a[1] - b[1]).map(([k]) => k);
  assert.deepEqual(sorted, want);

  const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download-csv").click()]);
  const text = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert.equal(text[0], "region,amount_mean");
  const got = new Map(text.slice(1).map((l) => l.split(",")).map(([k, v]) => [k, Number(v)]));
  assert.equal(got.size, expected.size);
  for (const [k, v] of expected) assert.ok(Math.abs(got.get(k) - v) < 1e-9, `${k}: ${got.get(k)} vs ${v}`);

  // Where the result came from, and the one attempt that made it, refreshed live.
  const sha = createHash("sha256").update(csv).digest("hex");
  assert.equal(await page.getByTestId("provenance-sha256").innerText(), sha, "the input by content");
  assert.match(await page.getByTestId("provenance-release").innerText(), /^build-[0-9a-f]{12}$/);
  assert.match(await page.getByTestId("provenance-engine").innerText(), /^quarry-engine .* \(polars 0\./);
  const attempts = page.locator("[data-testid=attempt-row]");
  await page.locator("[data-testid=attempt-row][data-outcome=succeeded]").waitFor();
  assert.equal(await attempts.count(), 1, "one attempt");
  await screenshot(page, "job-result");

  // Re-run on the release the workers run now: the re-run's page says it is identical.
  const original = page.url();
  await page.getByTestId("rerun").click();
  await page.waitForURL((u) => u.href !== original && /\/jobs\/[^/]+$/.test(u.pathname));
  await page.locator("[data-testid=job-status][data-status=succeeded]").waitFor({ timeout: 60_000 });
  await page.getByTestId("rerun-identical").waitFor();
  assert.match(await page.getByTestId("rerun-identical").innerText(), new RegExp(`^Identical to the original's result: ${expected.size} rows`));
  assert.match(await page.getByTestId("rerun-of").innerText(), /^A re-run of \w{8}, on release build-[0-9a-f]{12}$/);

  assert.deepEqual(errors, [], "no errors in the browser console");
  await page.close();
});

test("another analyst cannot see the first one's dataset, on the page or through the API", async () => {
  assert.ok(anaDatasetId, "the first test uploaded a dataset");
  const page = await browser.newPage();
  await signIn(page, quarry.base, "bea", PASSWORD.bea);
  await page.getByText("No datasets yet").waitFor();
  await page.goto(`${quarry.base}/datasets/${anaDatasetId}`);
  assert.match(await page.getByTestId("dataset-error").innerText(), /no dataset with id/);
  const api = await fetch(`${quarry.base}/api/v1/datasets/${anaDatasetId}`, {
    headers: { authorization: `Bearer ${tokens.bea}` },
  });
  assert.equal(api.status, 404);
  const own = await fetch(`${quarry.base}/api/v1/datasets/${anaDatasetId}`, {
    headers: { authorization: `Bearer ${tokens.ana}` },
  });
  assert.equal(own.status, 200, "the owner still sees it");
  await screenshot(page, "isolation");
  await page.close();
});

test("a lead sees the system graphs with data points; an analyst is refused", async () => {
  const page = await browser.newPage();
  await signIn(page, quarry.base, "ana", PASSWORD.ana);
  await page.goto(`${quarry.base}/system`);
  assert.match(await page.locator("[role=alert]").innerText(), /for leads, operators and admins/);

  const lead = await browser.newPage();
  await signIn(lead, quarry.base, "lee", PASSWORD.lee);
  await lead.goto(`${quarry.base}/system?range=15m`);
  const charts = lead.getByTestId("line-chart");
  await charts.first().waitFor();
  assert.equal(await charts.count(), 6);
  const titles = await lead.locator("figure.line-chart figcaption").allInnerTexts();
  for (const t of ["Queue depth", "Oldest queued job", "Workers", "Jobs finished", "Job duration", "Worker time used"]) {
    assert.ok(titles.some((x) => x.startsWith(t)), `${t} in ${titles}`);
  }
  const queuePoints = Number(await charts.first().getAttribute("data-points"));
  assert.ok(queuePoints > 0, "the queue graph has points");
  assert.ok((await lead.locator("[data-testid=line-chart] circle[data-testid=point]").count()) > 0);
  await screenshot(lead, "system");
  await page.close();
  await lead.close();
});

test("an analyst creates an API token on the settings page, uses it, and revokes it", async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await signIn(page, quarry.base, "ana", PASSWORD.ana);
  await page.getByTestId("who").click();
  await page.waitForURL(/\/settings$/);
  await waitForHydration(page);
  await page.fill("[data-testid=create-token] input[name=label]", "script");
  await page.click("[data-testid=create-token] button[type=submit]");
  const token = (await page.getByTestId("new-token").innerText()).trim();
  assert.match(token, /^qry_[0-9a-f]{64}$/);
  const use = () => fetch(`${quarry.base}/api/v1/datasets`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal((await use()).status, 200);

  const row = page.locator("tr[data-label=script]");
  await row.getByTestId("revoke").click();
  await row.getByText("revoked").waitFor();
  const refused = await use();
  assert.equal(refused.status, 401);
  assert.match((await refused.json()).error.message, /revoked/);
  assert.deepEqual(errors, [], "no errors in the browser console");
  await screenshot(page, "settings");
  await page.close();
});
