// The operator's control plane in the browser, against moto's server holding both
// stacks: staging runs v1 (deployed through the REST API); one operator promotes it to
// production from the overview, another opens the promotion, reads its diff rows,
// approves it and watches it reach `succeeded` without a reload. A result pinned on
// production's release blocks the promotion of a candidate whose engine changes it:
// the page shows the first differing rows, and only an admin's override lets it by.
// Analysts get 403.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import {
  startQuarry, startMoto, stackEnvironments, api, launchBrowser, watchErrors, waitForHydration, signIn, signInWithToken,
  screenshot, meanByCategory, until,
} from "./harness.mjs";

const V1 = `registry.example/quarry@sha256:${"1".repeat(64)}`;
const V2 = `registry.example/quarry@sha256:${"2".repeat(64)}`;
const PASSWORD = "a long operator password";
// Stack operations on the emulator take seconds; the budget is generous for a loaded machine.
const DEPLOY_MS = 240_000;

let moto;
let envDir;
let quarry;
let browser;
let olga;

async function settled(env) {
  const deadline = Date.now() + DEPLOY_MS;
  for (;;) {
    const { body } = await api(quarry.base, olga, "GET", `/api/v1/environments/${env}/releases`);
    if (body[0] && body[0].outcome !== "in_progress") return body[0];
    if (Date.now() > deadline) throw new Error(`${env}'s release did not finish: ${JSON.stringify(body[0])}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(async () => {
  moto = await startMoto();
  envDir = stackEnvironments(moto);
  quarry = await startQuarry({
    ...moto.env,
    QUARRY_CONTROL__ENVIRONMENTS_DIR: envDir,
    QUARRY_CONTROL__POLL_MS: "200",
    QUARRY_CONTROL__GATE_POLL_MS: "200",
    // The embedded workers stand in for v1's fleet, so results carry v1 as their release.
    QUARRY_WORKER__RELEASE: V1,
  });
  olga = quarry.addUser("olga", "operator", PASSWORD);
  quarry.addUser("otto", "operator", PASSWORD);
  quarry.addUser("ana", "analyst", PASSWORD);
  const { status, body } = await api(quarry.base, olga, "POST", "/api/v1/environments/staging/deploy", { artifact: V1, commit: "c0ffee" });
  assert.equal(status, 202, JSON.stringify(body));
  assert.equal((await settled("staging")).outcome, "succeeded");
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await quarry?.stop();
  await moto?.stop();
  if (envDir) rmSync(envDir, { recursive: true, force: true });
});

test("an operator promotes from the overview; another approves the diff and watches it succeed", async () => {
  // Olga: the overview, and the promote button on production's card.
  const olgaCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await olgaCtx.newPage();
  const errors = watchErrors(page);
  await signIn(page, quarry.base, "olga", PASSWORD);
  await page.goto(`${quarry.base}/operations`);
  await waitForHydration(page);
  const cards = page.getByTestId("pipeline").locator("article");
  assert.deepEqual(await cards.evaluateAll((xs) => xs.map((x) => x.dataset.environment)), ["staging", "production"]);
  const staging = page.getByTestId("env-card-staging");
  assert.match(await staging.getByTestId("artifact").innerText(), /^quarry@sha256:111111111111…$/);
  assert.match(await staging.getByTestId("last-release").innerText(), /deploy by olga at .* succeeded/);
  assert.equal(await staging.getByTestId("promote").count(), 0, "staging is deployed to, not promoted to");
  const production = page.getByTestId("env-card-production");
  assert.equal(await production.getByTestId("artifact").innerText(), "none yet");
  await screenshot(page, "operations-overview");
  await production.getByTestId("promote").click();

  // The promotion page: the diff rows, and a panel Olga may not use.
  await page.waitForURL(/\/operations\/promotions\/[^/]+$/);
  const id = page.url().split("/").pop();
  await page.locator("[data-testid=promotion-status][data-status=awaiting_approval]").waitFor();
  const { body: stored } = await api(quarry.base, olga, "GET", `/api/v1/promotions/${id}`);
  assert.equal(stored.status, "awaiting_approval");
  assert.ok(stored.diff.length > 0, "a first deploy adds the stack's resources");
  assert.equal(await page.getByTestId("diff-row").count(), stored.diff.length);
  assert.equal(await page.getByTestId("approval-panel").getAttribute("data-enabled"), "false");
  assert.match(await page.getByTestId("approval-disabled").innerText(), /You requested this promotion, so someone else must approve it/);
  assert.ok(await page.getByTestId("approve").isDisabled());
  assert.deepEqual(errors, [], "no errors in Olga's browser");

  // Otto: from the overview to the open promotion, its rows, and an approval.
  const ottoCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const other = await ottoCtx.newPage();
  const otherErrors = watchErrors(other);
  await signIn(other, quarry.base, "otto", PASSWORD);
  await other.goto(`${quarry.base}/operations`);
  await waitForHydration(other);
  await other.getByTestId("env-card-production").getByTestId("open-promotion").click();
  await other.waitForURL(new RegExp(`/operations/promotions/${id}$`));
  await waitForHydration(other);
  const rows = other.getByTestId("diff-row");
  assert.equal(await rows.count(), stored.diff.length);
  const shown = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.innerText.trim())));
  const expected = stored.diff.map((r) => [r.action, r.logical_id, r.type, r.replacement || "–"]);
  assert.deepEqual(shown, expected, "the approver sees exactly the stored rows");
  assert.equal(await other.getByTestId("approval-panel").getAttribute("data-enabled"), "true");
  await screenshot(other, "promotion-awaiting-approval");

  // The approval, then the status follows the deploy live: no navigation, no reload.
  await other.evaluate(() => { window.__sameDocument = true; });
  await other.fill("[data-testid=decide-form] textarea[name=comment]", "diff reviewed");
  await other.getByTestId("approve").click();
  // Whatever ends the wait is reported: the stored promotion beside what the page shows.
  await other
    .locator("[data-testid=promotion-status][data-status=succeeded], [data-testid=promotion-status][data-status=failed], [data-testid=decision-error]")
    .first()
    .waitFor({ timeout: DEPLOY_MS })
    .catch(() => {});
  const { body: after } = await api(quarry.base, olga, "GET", `/api/v1/promotions/${id}`);
  const shownStatus = await other.getByTestId("promotion-status").getAttribute("data-status");
  const problem = await other.getByTestId("decision-error").count() ? await other.getByTestId("decision-error").innerText() : "";
  assert.equal(shownStatus, "succeeded", `page shows ${shownStatus} ${problem}; stored: ${JSON.stringify({ status: after.status, detail: after.detail })}`);
  assert.equal(await other.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
  assert.match(await other.getByTestId("approvals").innerText(), /Approved by otto at .*: diff reviewed/);
  await screenshot(other, "promotion-succeeded");
  assert.deepEqual(otherErrors, [], "no errors in Otto's browser");

  // The environment page: production's release history shows the promotion.
  await other.goto(`${quarry.base}/operations/environments/production`);
  await waitForHydration(other);
  const release = other.getByTestId("release-row").first();
  assert.equal(await release.getAttribute("data-kind"), "promotion");
  assert.equal(await release.getAttribute("data-outcome"), "succeeded");
  assert.match(await release.innerText(), /otto/);
  assert.match(await other.getByTestId("artifact").innerText(), /^quarry@sha256:111111111111…$/);
  assert.ok((await other.getByTestId("resource-row").count()) > 0, "the stack's resources are listed");
  // The timeline marks the promotion on each of its charts, on one time axis.
  const timeline = other.getByTestId("timeline");
  await timeline.waitFor();
  assert.equal(await timeline.getAttribute("data-markers"), "1", "one release in production so far");
  const charts = timeline.getByTestId("line-chart");
  assert.equal(await charts.count(), 3, "throughput, failure rate, p95 duration");
  const marks = timeline.locator("[data-testid=marker][data-kind=promotion]");
  assert.equal(await marks.count(), 3, "the promotion on every chart");
  const at = new Set(await marks.evaluateAll((els) => els.map((e) => e.getAttribute("data-at"))));
  assert.equal(at.size, 1, "at one time");
  const when = Number([...at][0]);
  assert.ok(Math.abs(when - Date.parse(after.requested_at)) < 10 * 60_000, `marker at ${when}`);
  assert.match(await marks.first().locator("title").textContent(), /^promotion quarry@sha256:111111111111… · succeeded by \w+$/);
  await other.getByTestId("releases").locator("details summary").first().click();
  await screenshot(other, "environment-production");
  await olgaCtx.close();
  await ottoCtx.close();
});

test("a candidate that changes a pinned result is blocked, with its differing rows, until an admin overrides", async () => {
  // Mean amount by region over generated rows, computed here without polars.
  const { job, means } = await meanByCategory(quarry.base, olga, "regional");
  const pinned = await api(quarry.base, olga, "POST", "/api/v1/references", { job_id: job.id, name: "mean amount by region" });
  assert.equal(pinned.status, 201, JSON.stringify(pinned.body));

  // v2 on staging, and its workers, whose engine perturbs every float.
  const deployed = await api(quarry.base, olga, "POST", "/api/v1/environments/staging/deploy", { artifact: V2, commit: "c0ffee" });
  assert.equal(deployed.status, 202, JSON.stringify(deployed.body));
  assert.equal((await settled("staging")).outcome, "succeeded");
  await quarry.restart({ QUARRY_WORKER__RELEASE: V2, QUARRY_TEST_FAULT: "perturb_floats" });
  const requested = await api(quarry.base, olga, "POST", "/api/v1/promotions", { from: "staging", to: "production" });
  assert.equal(requested.status, 201, JSON.stringify(requested.body));
  const id = requested.body.id;
  await until("the gate to block", async () => {
    const { body } = await api(quarry.base, olga, "GET", `/api/v1/promotions/${id}`);
    return body.gate.status === "blocked";
  });

  // Otto opens it: which analysis differed, its first rows side by side, no approval.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await signIn(page, quarry.base, "otto", PASSWORD);
  await page.goto(`${quarry.base}/operations/promotions/${id}`);
  await waitForHydration(page);
  await page.locator("[data-testid=gate][data-gate=blocked]").waitFor();
  const check = page.locator("[data-testid=gate-check][data-status=differed]");
  assert.match(await check.innerText(), /mean amount by region/);
  assert.match(await check.getByTestId("differences").innerText(), /4 of 4 rows differ/);
  const expected = await check.getByTestId("expected-row").evaluateAll((rows) =>
    rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)));
  const actual = await check.getByTestId("actual-row").evaluateAll((rows) =>
    rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)));
  assert.equal(expected.length, 4);
  const near = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
  means.forEach(([category, mean], i) => {
    assert.deepEqual(expected[i].slice(1, 3), ["expected", category], JSON.stringify(expected[i]));
    assert.ok(near(Number(expected[i][3]), mean), `${category}: ${expected[i][3]} vs ${mean}`);
    assert.deepEqual(actual[i].slice(0, 2), ["candidate", category], JSON.stringify(actual[i]));
    assert.ok(near(Number(actual[i][2]), mean * (1 + 1e-6)), `${category}: ${actual[i][2]}`);
  });
  assert.ok(await page.getByTestId("approve").isDisabled(), "no approval past a blocked gate");
  assert.match(await page.getByTestId("approval-gated").innerText(), /different result on the candidate/);
  assert.equal(await page.getByTestId("override-form").count(), 0, "operators cannot override");
  await screenshot(page, "promotion-blocked-by-gate");

  // The admin overrides it with a reason; the page shows who and why.
  const adminCtx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const adminPage = await adminCtx.newPage();
  await signInWithToken(adminPage, quarry.base, quarry.adminToken);
  await adminPage.goto(`${quarry.base}/operations/promotions/${id}`);
  await waitForHydration(adminPage);
  await adminPage.fill("[data-testid=override-form] textarea[name=reason]", "the rounding change is intended");
  await adminPage.getByTestId("override-gate").click();
  await adminPage.locator("[data-testid=gate][data-gate=overridden]").waitFor();
  assert.match(await adminPage.getByTestId("gate-override").innerText(), /Overridden by admin at .*: the rounding change is intended/);
  await screenshot(adminPage, "promotion-gate-overridden");
  // Left unpromoted: production keeps v1.
  const rejected = await api(quarry.base, olga, "POST", `/api/v1/promotions/${id}/reject`, { comment: "not this one" });
  assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
  assert.deepEqual(errors, []);
  await ctx.close();
  await adminCtx.close();
});

test("an operator freezes an environment with a reason and sees a rollback refused", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  await signIn(page, quarry.base, "olga", PASSWORD);
  await page.goto(`${quarry.base}/operations/environments/staging`);
  await waitForHydration(page);
  await page.fill("[data-testid=freeze-form] input[name=reason]", "release freeze for the audit");
  await page.getByTestId("freeze").click();
  await page.getByTestId("frozen-note").waitFor();
  assert.match(await page.getByTestId("frozen-note").innerText(), /Frozen by olga at .*: release freeze for the audit/);
  await page.fill("[data-testid=rollback-form] input[name=reason]", "try it");
  await page.getByTestId("rollback").click();
  await page.getByTestId("action-error").waitFor();
  assert.match(await page.getByTestId("action-error").innerText(), /frozen.*release freeze for the audit/i);
  await page.fill("[data-testid=unfreeze-form] input[name=reason]", "audit done");
  await page.getByTestId("unfreeze").click();
  await page.getByTestId("freeze-form").waitFor();
  assert.equal(await page.getByTestId("frozen-note").count(), 0);
  await ctx.close();
});

test("an analyst gets 403 on the operations pages", async () => {
  const { body: list } = await api(quarry.base, olga, "GET", "/api/v1/promotions");
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await signIn(page, quarry.base, "ana", PASSWORD);
  assert.equal(await page.locator("header nav a[href='/operations']").count(), 0, "no link for analysts");
  for (const path of ["/operations", "/operations/environments/production", `/operations/promotions/${list[0].id}`]) {
    const response = await page.goto(`${quarry.base}${path}`);
    assert.equal(response.status(), 403, path);
    assert.match(await page.locator("[role=alert]").first().innerText(), /environments are for leads, operators and admins/, path);
  }
  await ctx.close();
});
