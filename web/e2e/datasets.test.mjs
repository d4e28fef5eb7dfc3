// The datasets page in a real browser: sign in, upload through the form, see the
// dataset after a reload, and prove hydration with clicks that only work in WASM.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startQuarry, launchBrowser, watchErrors, waitForHydration, signInWithToken, screenshot } from "./harness.mjs";

let quarry;
let browser;

before(async () => {
  quarry = await startQuarry();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await quarry?.stop();
});

function csv(rows) {
  const lines = ["city,population,area"];
  for (let i = 0; i < rows; i++) lines.push(`city${i},${1000 + i},${(i * 1.5).toFixed(1)}`);
  return Buffer.from(lines.join("\n") + "\n");
}

test("a signed-out visitor is sent to sign in", async () => {
  const page = await browser.newPage();
  await page.goto(`${quarry.base}/datasets`);
  await page.getByRole("link", { name: "Sign in" }).first().waitFor();
  await page.goto(`${quarry.base}/login`);
  await page.fill("#name", "admin");
  await page.fill("#password", "not the password");
  await page.click("[data-testid=password-form] button[type=submit]");
  await page.waitForURL(/\/login\?error=/);
  assert.match(await page.locator("[role=alert]").innerText(), /name or password is not right/);
  await screenshot(page, "login-refused");
  await page.close();
});

test("upload, reload, expand columns and delete in the browser", async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);

  await signInWithToken(page, quarry.base, quarry.adminToken);
  await page.getByTestId("who").waitFor();
  assert.match(await page.getByTestId("who").innerText(), /admin/);

  await page.setInputFiles("input[type=file]", { name: "cities.csv", mimeType: "text/csv", buffer: csv(1234) });
  await page.click("form.upload button[type=submit]");
  await page.waitForURL(/uploaded=cities/);
  const row = page.locator("tr[data-name='cities']");
  await row.waitFor();
  assert.equal(await row.getByTestId("rows").innerText(), "1234");

  await page.goto(`${quarry.base}/datasets`);
  await row.waitFor();
  assert.equal(await row.getByTestId("rows").innerText(), "1234", "still there after a reload");

  // Hydration: these buttons do nothing without the WASM bundle.
  await waitForHydration(page);
  await row.getByTestId("toggle-columns").click();
  const columns = page.getByTestId("columns");
  await columns.waitFor();
  assert.match(await columns.innerText(), /population\s+int64/);
  await row.getByTestId("toggle-columns").click();
  await columns.waitFor({ state: "detached" });

  page.once("dialog", (d) => d.accept());
  await row.getByTestId("delete").click();
  await row.waitFor({ state: "detached" });
  assert.match(page.url(), /\/datasets/, "deleted in place, without leaving the page");
  const api = await fetch(`${quarry.base}/api/v1/datasets`, {
    headers: { authorization: `Bearer ${quarry.adminToken}` },
  });
  assert.deepEqual(await api.json(), []);

  assert.deepEqual(errors, [], "no errors in the browser console");
  await screenshot(page, "datasets-after-delete");
  await page.close();
});

test("a malformed upload shows the server's message on the page", async () => {
  const page = await browser.newPage();
  await signInWithToken(page, quarry.base, quarry.adminToken);
  await page.setInputFiles("input[type=file]", {
    name: "bad.csv",
    mimeType: "text/csv",
    buffer: Buffer.from("a,b\n1,2\n3,4,5,6\n"),
  });
  await page.click("form.upload button[type=submit]");
  await page.waitForURL(/error=/);
  assert.match(await page.locator("[role=alert]").first().innerText(), /not valid CSV/);
  await screenshot(page, "upload-refused");
  await page.close();
});

test("a file dropped on the upload form is uploaded, with a progress bar", async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await signInWithToken(page, quarry.base, quarry.adminToken);
  await waitForHydration(page);
  // Drop a file the way a browser does: a drop event carrying a DataTransfer.
  await page.evaluate(() => {
    const lines = ["k,v"];
    for (let i = 0; i < 20000; i++) lines.push(`k${i % 10},${i}`);
    const file = new File([lines.join("\n") + "\n"], "dropped.csv", { type: "text/csv" });
    const data = new DataTransfer();
    data.items.add(file);
    const form = document.querySelector("[data-testid=upload-form]");
    form.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
    form.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  assert.equal(await page.locator("input[type=file]").evaluate((i) => i.files[0]?.name), "dropped.csv");
  // The progress bar shows while the file is sent; the page reloads afterwards, so
  // the sighting is kept in sessionStorage.
  await page.evaluate(() => {
    new MutationObserver(() => {
      if (document.querySelector("[data-testid=upload-progress]")) sessionStorage.setItem("sawProgress", "1");
    }).observe(document.body, { subtree: true, childList: true });
  });
  await page.click("form.upload button[type=submit]");
  await page.waitForURL(/uploaded=dropped/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("sawProgress")), "1", "the progress bar showed");
  const row = page.locator("tr[data-name='dropped']");
  await row.waitFor();
  assert.equal(await row.getByTestId("rows").innerText(), "20000");
  assert.deepEqual(errors, [], "no errors in the browser console");
  await screenshot(page, "dropped-upload");
  await page.close();
});

test("an R export with NA is typed on upload and a column is re-typed on its page", async () => {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await signInWithToken(page, quarry.base, quarry.adminToken);
  await page.getByTestId("who").waitFor();

  // As R's write.csv writes it: quoted strings, NA for missing numbers, ISO dates.
  const lines = ['"zip","dep_delay","day"'];
  for (let i = 0; i < 50; i++) {
    const delay = i % 5 === 0 ? "NA" : (i * 1.5).toFixed(1);
    lines.push(`"0${1000 + i}",${delay},"2013-01-${String((i % 28) + 1).padStart(2, "0")}"`);
  }
  await page.setInputFiles("input[type=file]", {
    name: "flights.csv", mimeType: "text/csv", buffer: Buffer.from(lines.join("\n") + "\n"),
  });
  await page.click("form.upload button[type=submit]");
  await page.waitForURL(/uploaded=flights/);
  const list = await (await fetch(`${quarry.base}/api/v1/datasets`, {
    headers: { authorization: `Bearer ${quarry.adminToken}` },
  })).json();
  const flights = list.find((d) => d.name === "flights");
  const typeOf = (d, name) => d.columns.find((c) => c.name === name).type;
  assert.equal(typeOf(flights, "dep_delay"), "float64");
  assert.equal(typeOf(flights, "day"), "date");
  assert.equal(typeOf(flights, "zip"), "int64", "detected as a number first");

  await page.goto(`${quarry.base}/datasets/${flights.id}`);
  await waitForHydration(page);
  const zip = page.getByTestId("type-zip");
  await zip.waitFor();
  assert.equal(await zip.inputValue(), "int64");
  assert.match(await page.getByTestId("stored-sizes").innerText(), /typed Parquet copy/);
  await zip.selectOption("string");
  await page.getByTestId("retype").click();
  await page.waitForFunction(() => {
    const cell = [...document.querySelectorAll("[data-testid=preview] tbody tr td")][0];
    return cell && cell.textContent.startsWith("0");
  });
  const after = await (await fetch(`${quarry.base}/api/v1/datasets/${flights.id}`, {
    headers: { authorization: `Bearer ${quarry.adminToken}` },
  })).json();
  assert.equal(typeOf(after, "zip"), "string");
  assert.equal(typeOf(after, "dep_delay"), "float64", "the other columns keep their types");
  assert.deepEqual(errors, [], "no errors in the browser console");
  await screenshot(page, "dataset-column-types");
  await page.close();
});
