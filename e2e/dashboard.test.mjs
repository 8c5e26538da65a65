// Browser test of the dashboard: starts the real chimney (examples/
// dashboard_fixture.rs, with a fake GitHub and recorded deploys behind it),
// opens `/` in headless Chromium through playwright-core, and checks that
// every number the page shows is what chimney's API answers. Screenshots
// (desktop, phone, degraded) go to target/artifacts/.
//
//   node --test e2e/dashboard.test.mjs
//
// Environment: CHROMIUM_PATH (default /usr/bin/chromium), DASHBOARD_FIXTURE
// (the fixture binary; default target/debug/examples/dashboard_fixture,
// built with cargo when missing), ARTIFACTS_DIR (default target/artifacts).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const FIXTURE = process.env.DASHBOARD_FIXTURE || join(ROOT, 'target/debug/examples/dashboard_fixture');
const ARTIFACTS = process.env.ARTIFACTS_DIR || join(ROOT, 'target/artifacts');
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

let fixture;
let base;
let fixtureInfo;
let context;
let userDataDir;

/** Starts the fixture and resolves with its JSON announcement line. */
function startFixture() {
  if (!existsSync(FIXTURE)) {
    const build = spawnSync('cargo', ['build', '--quiet', '--example', 'dashboard_fixture'], {
      cwd: ROOT,
      stdio: 'inherit',
      timeout: 15 * 60 * 1000,
    });
    assert.equal(build.status, 0, 'building the dashboard fixture failed');
  }
  fixture = spawn(FIXTURE, ['--max-seconds', '300'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error('fixture did not announce itself in 60 s')), 60000);
    fixture.once('exit', (code) => reject(new Error(`fixture exited early with ${code}`)));
    createInterface({ input: fixture.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolveLine(JSON.parse(line));
    });
  });
}

async function stopFixture() {
  if (!fixture || fixture.exitCode !== null) return;
  const exited = new Promise((done) => fixture.once('exit', done));
  process.kill(fixture.pid, 'SIGTERM');
  const timer = setTimeout(() => fixture.exitCode === null && process.kill(fixture.pid, 'SIGKILL'), 8000);
  await exited;
  clearTimeout(timer);
}

async function api(path, init) {
  const response = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(10000) });
  const text = init?.method === 'HEAD' ? '' : await response.text();
  let json = null;
  if (response.ok && text && (response.headers.get('content-type') || '').includes('json')) {
    json = JSON.parse(text);
  }
  return { status: response.status, headers: response.headers, json, text };
}

/** Opens the dashboard and waits for its first complete refresh. */
async function openDashboard(viewport, query = '?refresh=3600') {
  const page = await context.newPage();
  await page.setViewportSize(viewport);
  await page.goto(`${base}/${query}`, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => Number(document.body.dataset.refreshed) >= 1, null, { timeout: 30000 });
  return page;
}

/** Every element with a data-testid: its text, data-value and visibility. */
async function readPage(page) {
  return page.$$eval('[data-testid]', (els) => {
    const out = {};
    for (const el of els) {
      const id = el.dataset.testid;
      const entry = {
        text: el.textContent.trim(),
        value: el.dataset.value ?? null,
        state: el.dataset.state ?? null,
        visible: !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length) && !el.closest('[hidden]'),
      };
      if (id in out) {
        out[id].count += 1;
        out[id].items.push(entry);
      } else {
        out[id] = { ...entry, count: 1, items: [entry] };
      }
    }
    return out;
  });
}

function num(entry, name) {
  assert.ok(entry, `${name} is on the page`);
  assert.notEqual(entry.value, null, `${name} has a data-value`);
  assert.notEqual(entry.value, '', `${name} is known (text ${JSON.stringify(entry.text)})`);
  return Number(entry.value);
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  fixtureInfo = await startFixture();
  base = fixtureInfo.url;
  userDataDir = mkdtempSync(join(tmpdir(), 'chimney-e2e-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: DESKTOP,
    timeout: 60000,
  });
});

after(async () => {
  await context?.close().catch(() => {});
  await stopFixture();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

describe('dashboard', { timeout: 180000 }, () => {
  test('shows the same numbers as the API, on a desktop', async () => {
    const page = await openDashboard(DESKTOP);
    const shown = await readPage(page);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    // Counters first: the reads below go through the proxy and move them.
    const stats = await api('/api/cache/stats');
    const health = await api('/healthz');
    const summary = await api('/api/pipeline/summary');
    const deploy = await api('/api/deploy/status');
    const repos = await api('/api/github/org/repos');
    const metrics = await api('/api/metrics');
    const version = await api('/api/version');

    // Service and Dragonfly.
    assert.equal(health.status, 200);
    assert.equal(shown['health-status'].value, health.json.status);
    assert.equal(shown['dragonfly-state'].value, health.json.dragonfly);
    assert.equal(shown['repo-name'].text, health.json.repo);
    if (version.status === 200) {
      assert.equal(shown['chimney-version'].text, version.json.chimney_version);
    }

    // Pipeline summary.
    assert.equal(summary.status, 200);
    const s = summary.json;
    assert.deepEqual(s.missing, [], 'the fixture answers every part');
    assert.equal(num(shown['open-issues'], 'open-issues'), s.open_issues);
    assert.equal(shown['open-issues'].text, String(s.open_issues));
    assert.equal(num(shown['open-prs'], 'open-prs'), s.open_prs);
    assert.equal(num(shown['goose-success-rate'], 'goose-success-rate'), s.goose_success_rate_pct);
    assert.equal(shown['goose-success-rate'].text, `${s.goose_success_rate_pct.toFixed(1)}%`);
    assert.equal(num(shown['recent-runs-count'], 'recent-runs-count'), s.recent_workflow_runs.length);
    const pips = shown['recent-runs-item'];
    assert.equal(pips.count, s.recent_workflow_runs.length);
    assert.deepEqual(
      pips.items.map((p) => p.text === '✓'),
      s.recent_workflow_runs.map((r) => r.conclusion === 'success'),
    );
    assert.equal(num(shown['last-merged-pr-number'], 'last-merged-pr-number'), s.last_merged_pr.number);
    assert.equal(shown['last-merged-pr-title'].text, s.last_merged_pr.title);
    assert.equal(shown['wgmesh-version'].text, s.wgmesh_version);
    assert.equal(shown['summary-missing'].visible, false);

    // Deploys: whatever /api/deploy/status says, the card says too.
    if (deploy.status === 200) {
      const d = deploy.json;
      assert.equal(fixtureInfo.deploys_recorded, true);
      assert.equal(shown['deploy-sha'].value, d.last_deploy.sha);
      assert.equal(shown['deploy-sha'].text, d.last_deploy.sha.slice(0, 12));
      assert.equal(shown['deploy-slot'].value, d.last_deploy.slot);
      assert.equal(shown['deploy-outcome'].value, d.last_deploy.outcome);
      assert.equal(num(shown['deploy-duration'], 'deploy-duration'), d.last_deploy.duration_s);
      assert.equal(num(shown['deploy-total'], 'deploy-total'), d.total_deploys);
      assert.equal(num(shown['deploy-success-rate'], 'deploy-success-rate'), d.success_rate_pct);
      const age = num(shown['deploy-age'], 'deploy-age');
      assert.ok(Math.abs(age - d.last_deploy.age_s) <= 15, `deploy age ${age} vs ${d.last_deploy.age_s}`);
      assert.equal(shown['deploy-recent-item'].count, d.recent_deploys.length);
      assert.ok(shown['deploy-pr'].text.includes(`#${d.last_deploy.pr_number}`));
      assert.equal(shown['deploy-empty'].visible, false);
    } else if (deploy.status === 204) {
      assert.equal(shown['deploy-empty'].visible, true);
    } else {
      assert.equal(shown['card-deploy'].state, 'error', `deploy status answered ${deploy.status}`);
    }

    // Cache: /api/cache/stats when it exists, else /healthz.
    let hits;
    let misses;
    let entries;
    if (stats.status === 200) {
      ({ hits, misses } = stats.json);
      entries = stats.json.memory.entries;
      assert.equal(shown['cache-source'].value, '/api/cache/stats');
      assert.equal(num(shown['cache-bytes'], 'cache-bytes'), stats.json.memory.bytes);
    } else {
      hits = health.json.cache_hits;
      misses = health.json.cache_misses;
      entries = health.json.mem_cache_entries;
      assert.equal(shown['cache-source'].value, '/healthz');
    }
    assert.equal(num(shown['cache-hits'], 'cache-hits'), hits);
    assert.equal(num(shown['cache-misses'], 'cache-misses'), misses);
    assert.equal(num(shown['cache-entries'], 'cache-entries'), entries);
    assert.equal(num(shown['cache-hit-ratio'], 'cache-hit-ratio'), Math.round((hits * 1000) / (hits + misses)) / 10);

    // GitHub's remaining budget: the gauge, else a proxied response's header.
    const gauge = metrics.status === 200
      ? metrics.text.match(/^chimney_github_rate_limit_remaining(?:\{[^}]*\})?\s+(\S+)/m)
      : null;
    const expected = gauge
      ? Number(gauge[1])
      : Number((await api('/api/github/pulls?state=open&per_page=100', { method: 'HEAD' })).headers.get('x-ratelimit-remaining'));
    assert.equal(num(shown['rate-limit-remaining'], 'rate-limit-remaining'), expected);
    assert.equal(expected, 4987, 'the fixture reports 4987 calls left');

    // Repositories.
    assert.equal(repos.status, 200);
    assert.equal(num(shown['org-repo-count'], 'org-repo-count'), repos.json.repos.length);
    assert.equal(shown['org-mode'].value, repos.json.mode);
    assert.equal(shown['org-repo'].count, repos.json.repos.length);

    // Every card is live, and so is the page.
    for (const card of ['pipeline', 'deploy', 'cache', 'service', 'repos']) {
      assert.ok(['ok', 'partial'].includes(shown[`card-${card}`].state), `${card}: ${shown[`card-${card}`].state}`);
    }
    assert.equal(shown['overall-status'].state, 'ok');
    await page.close();
  });

  test('updates from the live event stream, without polling', async () => {
    const page = await openDashboard(DESKTOP);
    await page.waitForFunction(
      () => document.querySelector('[data-testid="live-status"]')?.dataset.state === 'live',
      null,
      { timeout: 15000 },
    );
    const before = await readPage(page);
    assert.equal(before['live-status'].visible, true);
    assert.match(before['live-status'].text, /live/);
    const refreshes = await page.evaluate(() => Number(document.body.dataset.refreshed));

    const sha = 'e2e0live0a1b2c3d4e5f60718293a4b5c6d7e8f9';
    const posted = await api('/api/deploy/events', {
      method: 'POST',
      headers: { Authorization: `Bearer ${fixtureInfo.deploy_token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ sha, slot: 'green', outcome: 'success', duration_s: 7, pr_number: 129, pr_title: 'Live dashboard' }),
    });
    assert.equal(posted.status, 200, posted.text);
    await page.waitForFunction(
      (expected) => document.querySelector('[data-testid="deploy-sha"]')?.dataset.value === expected,
      sha,
      { timeout: 10000 },
    );
    const after = await readPage(page);
    assert.equal(after['deploy-slot'].value, 'green');
    assert.ok(after['deploy-pr'].text.includes('#129'));
    // The page was told, not polling: no refresh ran (it would poll hourly).
    assert.equal(await page.evaluate(() => Number(document.body.dataset.refreshed)), refreshes);
    assert.ok(await page.evaluate(() => Number(document.body.dataset.pushed) >= 1));
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-live.png'), fullPage: true });
    await page.close();

    // Without the stream the page says it polls, and still shows the data.
    const polling = await context.newPage();
    await polling.route('**/api/events', (route) => route.abort('connectionrefused'));
    await polling.setViewportSize(DESKTOP);
    await polling.goto(`${base}/?refresh=3600`);
    await polling.waitForFunction(() => Number(document.body.dataset.refreshed) >= 1, null, { timeout: 30000 });
    await polling.waitForFunction(
      () => document.querySelector('[data-testid="live-status"]')?.dataset.state === 'polling',
      null,
      { timeout: 15000 },
    );
    const shown = await readPage(polling);
    assert.equal(shown['deploy-sha'].value, sha);
    await polling.close();
  });

  test('is readable on a phone', async () => {
    const page = await openDashboard(PHONE);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px on a phone`);
    const columns = await page.evaluate(() => {
      const cards = [...document.querySelectorAll('[data-card]')].map((c) => c.getBoundingClientRect().left);
      return new Set(cards.map(Math.round)).size;
    });
    assert.equal(columns, 1, 'cards stack in one column');
    const shown = await readPage(page);
    assert.equal(shown['open-issues'].visible, true);
    assert.equal(shown['rate-limit-remaining'].visible, true);
    await page.close();
  });

  test('shows failed fetches as stale or unavailable instead of blanking', async () => {
    const page = await openDashboard(DESKTOP);
    const before = await readPage(page);

    await page.route('**/api/pipeline/summary', (route) =>
      route.fulfill({ status: 502, contentType: 'application/problem+json', body: '{"title":"Bad Gateway"}' }),
    );
    await page.route('**/api/cache/stats', (route) => route.abort('connectionrefused'));
    await page.route('**/healthz', (route) => route.abort('connectionrefused'));
    await page.click('[data-testid="refresh-now"]');
    await page.waitForFunction(() => Number(document.body.dataset.refreshed) >= 2, null, { timeout: 30000 });
    const after = await readPage(page);

    assert.equal(after['card-pipeline'].state, 'stale');
    assert.match(after['pipeline-status'].text, /stale · HTTP 502/);
    assert.equal(after['open-issues'].value, before['open-issues'].value, 'last values stay visible');
    assert.equal(after['card-service'].state, 'stale');
    assert.equal(after['card-cache'].state, 'stale', 'no stats and no /healthz to fall back on');
    assert.equal(after['overall-status'].state, 'degraded');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-degraded.png'), fullPage: true });
    await page.close();

    // A card that never loaded says so, and the rest of the page still works.
    const fresh = await context.newPage();
    await fresh.route('**/api/deploy/status', (route) =>
      route.fulfill({ status: 500, contentType: 'application/problem+json', body: '{}' }),
    );
    await fresh.setViewportSize(DESKTOP);
    await fresh.goto(`${base}/?refresh=3600`);
    await fresh.waitForFunction(() => Number(document.body.dataset.refreshed) >= 1, null, { timeout: 30000 });
    const shown = await readPage(fresh);
    assert.equal(shown['card-deploy'].state, 'error');
    assert.match(shown['deploy-status'].text, /unavailable · HTTP 500/);
    assert.notEqual(shown['open-issues'].value, '');
    await fresh.close();
  });
});
