// Drives Debian's chromium (headless) through the explorer with playwright-core, never a downloaded browser.
// Input (argv[2]): a JSON file {base, screenshots, pages: [{name, path, facts}]}; output: JSON facts per page.
// Each page is loaded, its DOM facts collected (what the Python test asserts), and a screenshot saved.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.PLAYWRIGHT_CORE_PATH + "/");
const { chromium } = require("playwright-core");

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const browser = await chromium.launch({
  executablePath: plan.chromium || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const results = {};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, javaScriptEnabled: true });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  for (const step of plan.pages) {
    consoleErrors.length = 0;
    const response = await page.goto(plan.base + step.path, { waitUntil: "load" });
    if (step.waitFor) {
      await page.waitForSelector(step.waitFor, { timeout: 15000 });
    }
    const facts = await page.evaluate(() => {
      const text = (selector) => Array.from(document.querySelectorAll(selector)).map((e) => e.textContent.trim());
      const checks = Array.from(document.querySelectorAll("#checks tbody tr")).map((row) => ({
        name: row.getAttribute("data-check"),
        status: row.className,
        detail: row.querySelector("td.wrap").textContent.trim(),
        color: getComputedStyle(row.querySelector("td.status")).color,
      }));
      const graph = document.getElementById("graph");
      return {
        title: document.title,
        h1: text("h1"),
        resultLinks: Array.from(document.querySelectorAll("#results a.record-link")).map((a) => a.getAttribute("href")),
        resultLocations: text("#results tbody td.wrap"),
        verdict: text("#verdict, #state-verdict"),
        checks,
        nodes: Array.from(document.querySelectorAll("#nodes tbody tr")).map((r) => r.getAttribute("data-node")),
        edges: Array.from(document.querySelectorAll("#edges tbody tr")).map((r) =>
          Array.from(r.querySelectorAll("td")).map((td) => td.textContent.trim())),
        graphRendered: graph ? graph.getAttribute("data-rendered") : null,
        graphCanvases: graph ? graph.querySelectorAll("canvas").length : 0,
        tree: Array.from(document.querySelectorAll("#tree tbody tr")).map((r) => r.getAttribute("data-path")),
        tarLink: document.querySelector("#download-tar") ? document.querySelector("#download-tar").getAttribute("href") : null,
        preview: text("#preview, #preview-error"),
        error: text("#error-message"),
      };
    });
    facts.status = response ? response.status() : null;
    facts.csp = response ? response.headers()["content-security-policy"] || null : null;
    facts.consoleErrors = [...consoleErrors];
    await page.screenshot({ path: `${plan.screenshots}/${step.name}.png`, fullPage: true });
    results[step.name] = facts;
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
