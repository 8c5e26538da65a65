// The wgmesh dashboard: reads chimney's own endpoints and fills the cards.
//
// Each card is refreshed independently. A failed fetch never blanks the
// page: the card keeps the last values it showed and says it is stale (or,
// before any success, that it is unavailable), with the HTTP status.
// Everything is written with textContent, never innerHTML: titles and
// descriptions come from GitHub users.
//
// Every number has a stable data-testid, its formatted text as content and
// its raw value in data-value (empty when unknown).
'use strict';

(() => {
  const params = new URLSearchParams(window.location.search);
  const REFRESH_S = clampInt(params.get('refresh'), 5, 3600, 30);
  const FETCH_TIMEOUT_MS = 10000;

  const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
  const lastGood = {};

  function clampInt(raw, min, max, fallback) {
    const n = Number.parseInt(raw ?? '', 10);
    return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : fallback;
  }

  /** GET (or HEAD) a URL; resolves to {ok, status, json, text, headers}. */
  async function request(url, { method = 'GET', as = 'json' } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch(url, {
        method,
        cache: 'no-store',
        headers: as === 'json' ? { Accept: 'application/json' } : {},
        signal: controller.signal,
      });
      const result = { ok: response.ok, status: response.status, headers: response.headers };
      if (method !== 'HEAD' && response.status !== 204) {
        const text = await response.text();
        result.text = text;
        if (as === 'json' && response.ok) {
          try {
            result.json = JSON.parse(text);
          } catch {
            result.ok = false;
            result.error = 'unreadable answer';
          }
        }
      }
      return result;
    } catch (error) {
      return { ok: false, status: 0, error: error.name === 'AbortError' ? 'timed out' : 'unreachable' };
    } finally {
      clearTimeout(timer);
    }
  }

  function describeFailure(result) {
    if (result.status) return `HTTP ${result.status}`;
    return result.error || 'failed';
  }

  // ---- formatting -------------------------------------------------------

  const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const pctFmt = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function setValue(testid, value, text) {
    const el = $(testid);
    if (!el) return;
    const known = value !== null && value !== undefined && value !== '';
    el.dataset.value = known ? String(value) : '';
    el.textContent = known ? (text ?? String(value)) : '–';
  }

  const setInt = (testid, n) =>
    setValue(testid, Number.isFinite(n) ? n : null, Number.isFinite(n) ? intFmt.format(n) : null);

  const setPct = (testid, n) =>
    setValue(testid, Number.isFinite(n) ? n : null, Number.isFinite(n) ? `${pctFmt.format(n)}%` : null);

  function setText(testid, text) {
    const el = $(testid);
    if (el) el.textContent = text ?? '';
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds)) return '–';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return null;
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
  }

  function since(iso) {
    const at = Date.parse(iso || '');
    if (!Number.isFinite(at)) return '';
    return `${duration((Date.now() - at) / 1000)} ago`;
  }

  const clock = (date) => date.toLocaleTimeString('en-GB', { hour12: false });

  // ---- card state -------------------------------------------------------

  /** Marks a card ok, stale (had data, this refresh failed) or error. */
  function cardState(name, state, message) {
    const card = document.querySelector(`[data-card="${name}"]`);
    if (!card) return;
    card.dataset.state = state;
    const badge = card.querySelector('[data-role="status"]');
    if (badge) badge.textContent = message;
  }

  function cardFailed(name, result) {
    const why = describeFailure(result);
    if (lastGood[name]) {
      cardState(name, 'stale', `stale · ${why} · last ok ${clock(lastGood[name])}`);
    } else {
      cardState(name, 'error', `unavailable · ${why}`);
    }
  }

  function cardOk(name, note) {
    lastGood[name] = new Date();
    cardState(name, note ? 'partial' : 'ok', note || 'live');
  }

  function strip(testid, items) {
    const box = $(testid);
    if (!box) return;
    box.replaceChildren(
      ...items.map((item) => {
        const el = document.createElement(item.href ? 'a' : 'span');
        el.className = `pip ${item.kind}`;
        el.dataset.testid = `${testid}-item`;
        el.dataset.outcome = item.kind;
        el.title = item.title;
        if (item.href) {
          el.href = item.href;
          el.rel = 'noopener';
        }
        el.textContent = item.label;
        return el;
      }),
    );
  }

  function outcomeKind(conclusion) {
    if (conclusion === 'success') return 'success';
    if (conclusion === 'failure' || conclusion === 'timed_out' || conclusion === 'startup_failure') {
      return 'failure';
    }
    return 'neutral';
  }

  // ---- cards ------------------------------------------------------------

  async function loadSummary() {
    const result = await request('/api/pipeline/summary');
    if (!result.ok) return cardFailed('pipeline', result);
    renderSummary(result.json);
  }

  /** Fills the pipeline card from a summary (fetched, or pushed by /api/events). */
  function renderSummary(s) {
    setInt('open-issues', s.open_issues);
    setInt('open-prs', s.open_prs);
    setPct('goose-success-rate', s.goose_success_rate_pct);
    const runs = Array.isArray(s.recent_workflow_runs) ? s.recent_workflow_runs : null;
    setInt('recent-runs-count', runs ? runs.length : null);
    strip(
      'recent-runs',
      (runs || []).map((run) => ({
        kind: outcomeKind(run.conclusion),
        label: run.conclusion === 'success' ? '✓' : run.conclusion === 'failure' ? '✗' : '•',
        title: `#${run.run_number ?? run.id} ${run.conclusion ?? run.status ?? ''} · ${run.head_branch ?? ''} ${
          (run.head_sha || '').slice(0, 7)
        }`,
        href: run.html_url,
      })),
    );
    const pr = s.last_merged_pr;
    const link = $('last-merged-pr-link');
    if (pr) {
      setInt('last-merged-pr-number', pr.number);
      setText('last-merged-pr-title', pr.title);
      setText('last-merged-pr-when', `${since(pr.merged_at)}${pr.user ? ` by ${pr.user}` : ''}`);
      if (link && pr.html_url) link.href = pr.html_url;
    } else {
      setInt('last-merged-pr-number', null);
      setText('last-merged-pr-title', s.missing?.includes('last_merged_pr') ? 'unavailable' : 'none recently');
      setText('last-merged-pr-when', '');
    }
    setText('wgmesh-version', s.wgmesh_version);
    const missing = Array.isArray(s.missing) ? s.missing : [];
    const warn = $('summary-missing');
    warn.hidden = missing.length === 0;
    warn.dataset.value = missing.join(',');
    warn.textContent = missing.length
      ? `GitHub did not answer for: ${missing.map((m) => m.replaceAll('_', ' ')).join(', ')}. Shown as –; retrying.`
      : '';
    cardOk('pipeline', missing.length ? `partial · ${missing.length} missing` : '');
  }

  let deployAge = null;

  async function loadDeploy() {
    const result = await request('/api/deploy/status');
    const empty = $('deploy-empty');
    const body = document.querySelector('[data-card="deploy"] .deploy-body');
    if (result.status === 204) {
      empty.hidden = false;
      body.hidden = true;
      deployAge = null;
      setInt('deploy-total', 0);
      return cardOk('deploy', 'no deploys yet');
    }
    if (!result.ok) return cardFailed('deploy', result);
    const d = result.json;
    const last = d.last_deploy || {};
    empty.hidden = true;
    body.hidden = false;
    setValue('deploy-sha', last.sha, (last.sha || '').slice(0, 12));
    setValue('deploy-slot', last.slot);
    setValue('deploy-outcome', last.outcome);
    $('deploy-outcome').dataset.outcome = outcomeKind(last.outcome);
    setValue('deploy-duration', last.duration_s, duration(last.duration_s));
    setInt('deploy-total', d.total_deploys);
    setPct('deploy-success-rate', d.success_rate_pct);
    deployAge = Number.isFinite(last.age_s) ? { base: last.age_s, at: Date.now() } : null;
    tickAges();
    const pr = last.pr_number ? `PR #${last.pr_number}${last.pr_title ? ` · ${last.pr_title}` : ''}` : '';
    const ips = Array.isArray(last.origin_ips) && last.origin_ips.length ? ` · origins ${last.origin_ips.join(', ')}` : '';
    setText('deploy-pr', `${pr}${ips}`);
    const recent = Array.isArray(d.recent_deploys) ? d.recent_deploys : [];
    strip(
      'deploy-recent',
      recent.map((ev) => ({
        kind: outcomeKind(ev.outcome),
        label: ev.outcome === 'success' ? '✓' : '✗',
        title: `${(ev.sha || '').slice(0, 7)} ${ev.outcome} · ${ev.slot ?? ''} · ${duration(ev.age_s)} ago`,
      })),
    );
    cardOk('deploy');
  }

  /**
   * A deploy event pushed by /api/events: the newest deploy is shown at
   * once; the totals and the recent strip are read once more.
   */
  function applyDeployEvent(ev) {
    if (!ev || typeof ev.sha !== 'string') return;
    $('deploy-empty').hidden = true;
    document.querySelector('[data-card="deploy"] .deploy-body').hidden = false;
    setValue('deploy-sha', ev.sha, ev.sha.slice(0, 12));
    setValue('deploy-slot', ev.slot);
    setValue('deploy-outcome', ev.outcome);
    $('deploy-outcome').dataset.outcome = outcomeKind(ev.outcome);
    setValue('deploy-duration', ev.duration_s, duration(ev.duration_s));
    const at = Date.parse(ev.deployed_at);
    deployAge = Number.isFinite(at) ? { base: Math.max(0, Math.floor((Date.now() - at) / 1000)), at: Date.now() } : null;
    tickAges();
    const pr = ev.pr_number ? `PR #${ev.pr_number}${ev.pr_title ? ` · ${ev.pr_title}` : ''}` : '';
    const ips = Array.isArray(ev.origin_ips) && ev.origin_ips.length ? ` · origins ${ev.origin_ips.join(', ')}` : '';
    setText('deploy-pr', `${pr}${ips}`);
    cardOk('deploy');
    loadDeploy();
  }

  function tickAges() {
    if (!deployAge) return;
    const age = deployAge.base + Math.floor((Date.now() - deployAge.at) / 1000);
    setValue('deploy-age', age, duration(age));
  }

  let healthCache = null;

  async function loadHealth() {
    const [health, version] = await Promise.all([request('/healthz'), request('/api/version')]);
    if (version.ok) {
      setText('chimney-version', version.json.chimney_version);
      setText('wgmesh-version', version.json.wgmesh_version);
    }
    if (!health.ok) {
      healthCache = null;
      return cardFailed('service', health);
    }
    const h = health.json;
    healthCache = h;
    setValue('health-status', h.status);
    setValue('dragonfly-state', h.dragonfly);
    $('dragonfly-state').dataset.state = h.dragonfly;
    setInt('dragonfly-keys', Number.isFinite(h.dragonfly_keys) ? h.dragonfly_keys : null);
    if (h.repo) {
      setText('repo-name', h.repo);
      document.getElementById('repo-link').href = `https://github.com/${h.repo}`;
    }
    const degraded = h.dragonfly !== 'connected' && h.dragonfly !== 'disabled';
    cardOk('service', degraded ? `Dragonfly ${h.dragonfly}` : '');
  }

  async function loadCache() {
    const stats = await request('/api/cache/stats');
    let hits;
    let misses;
    let entries;
    let size = null;
    let source;
    if (stats.ok && stats.json && Number.isFinite(stats.json.hits)) {
      hits = stats.json.hits;
      misses = stats.json.misses;
      entries = stats.json.memory?.entries;
      size = stats.json.memory?.bytes;
      source = '/api/cache/stats';
    } else if (healthCache) {
      hits = healthCache.cache_hits;
      misses = healthCache.cache_misses;
      entries = healthCache.mem_cache_entries;
      source = '/healthz';
    } else {
      return cardFailed('cache', stats);
    }
    const total = hits + misses;
    setInt('cache-hits', hits);
    setInt('cache-misses', misses);
    setInt('cache-entries', entries);
    setValue('cache-bytes', Number.isFinite(size) ? size : null, bytes(size));
    setPct('cache-hit-ratio', total > 0 ? Math.round((hits * 1000) / total) / 10 : null);
    setValue('cache-source', source);
    cardOk('cache', source === '/healthz' ? 'from /healthz' : '');
  }

  /**
   * GitHub's remaining request budget: chimney's gauge in /api/metrics
   * when it exports one, else the X-RateLimit-Remaining of a proxied
   * response (a HEAD of the open pull requests, which the summary keeps
   * cached, so this costs no GitHub call).
   */
  async function loadRateLimit() {
    const metrics = await request('/api/metrics', { as: 'text' });
    if (metrics.ok && metrics.text) {
      const match = metrics.text.match(/^chimney_github_rate_limit_remaining(?:\{[^}]*\})?\s+(\S+)/m);
      const value = match ? Number(match[1]) : Number.NaN;
      if (Number.isFinite(value) && value >= 0) {
        setInt('rate-limit-remaining', value);
        setValue('rate-limit-source', '/api/metrics');
        return;
      }
    }
    const head = await request('/api/github/pulls?state=open&per_page=100', { method: 'HEAD' });
    const header = head.headers?.get('x-ratelimit-remaining');
    const value = header === null || header === undefined ? Number.NaN : Number(header);
    if (Number.isFinite(value)) {
      setInt('rate-limit-remaining', value);
      setValue('rate-limit-source', 'X-RateLimit-Remaining');
    } else {
      setInt('rate-limit-remaining', null);
      setValue('rate-limit-source', `unavailable (${describeFailure(head)})`);
    }
  }

  async function loadRepos() {
    const result = await request('/api/github/org/repos');
    if (!result.ok) return cardFailed('repos', result);
    const listing = result.json;
    const repos = Array.isArray(listing.repos) ? listing.repos : [];
    setInt('org-repo-count', repos.length);
    setValue('org-mode', listing.mode);
    const list = $('org-repos');
    list.replaceChildren(
      ...repos.map((repo) => {
        const li = document.createElement('li');
        li.dataset.testid = 'org-repo';
        const a = document.createElement('a');
        a.href = repo.html_url;
        a.rel = 'noopener';
        a.textContent = repo.full_name;
        const meta = document.createElement('span');
        meta.className = 'muted small';
        const bits = [repo.language, Number.isFinite(repo.open_issues_count) ? `${repo.open_issues_count} open` : null];
        meta.textContent = bits.filter(Boolean).join(' · ');
        const desc = document.createElement('p');
        desc.className = 'desc';
        desc.textContent = repo.description || '';
        li.append(a, meta, desc);
        return li;
      }),
    );
    cardOk('repos', listing.mode === 'org' && repos.length === 0 ? 'discovering…' : '');
  }

  // ---- refresh loop -----------------------------------------------------

  let running = null;

  /**
   * One refresh. Reads that may go through the GitHub proxy come first, then
   * the counters, so the cache numbers shown include this refresh's reads.
   */
  async function refresh(full = false) {
    if (running) return running;
    running = (async () => {
      // While the event stream is live, the summary and the deploys arrive
      // through it: only the first refresh (and a manual one) reads them.
      const pushed = live.state === 'live' && !full;
      await Promise.allSettled([pushed ? null : loadSummary(), loadRepos()]);
      await Promise.allSettled([loadRateLimit(), loadHealth(), pushed ? null : loadDeploy()]);
      await Promise.allSettled([loadCache()]);
      const stamp = new Date();
      const when = $('last-refresh');
      when.textContent = clock(stamp);
      when.dateTime = stamp.toISOString();
      const states = [...document.querySelectorAll('[data-card]')].map((c) => c.dataset.state);
      const overall = $('overall-status');
      const bad = states.filter((s) => s === 'error' || s === 'stale').length;
      const partial = states.filter((s) => s === 'partial').length;
      overall.dataset.state = bad ? 'degraded' : partial ? 'partial' : 'ok';
      overall.textContent = bad ? `${bad} card${bad > 1 ? 's' : ''} stale or unavailable` : partial ? 'Partly degraded' : 'All good';
      document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  }

  // ---- live events ---------------------------------------------------------

  /**
   * GET /api/events: while it is open the summary and deploy cards update
   * from its events and are not polled; when it drops, polling takes over
   * (and the browser reconnects; on reconnect everything is read once, for
   * the events missed meanwhile).
   */
  const live = { state: 'off', source: null };

  function setLive(state) {
    live.state = state;
    const el = $('live-status');
    if (!el) return;
    el.dataset.state = state;
    el.textContent = state === 'live' ? '● live' : state === 'connecting' ? '○ connecting…' : '○ polling';
    el.title = state === 'live'
      ? 'Updates arrive as they happen (GET /api/events)'
      : `No live stream; refreshing every ${REFRESH_S} s`;
  }

  function onEvent(handler) {
    return (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      handler(data);
      document.body.dataset.pushed = String((Number(document.body.dataset.pushed) || 0) + 1);
    };
  }

  function connectLive() {
    if (typeof EventSource !== 'function' || params.get('live') === 'off') {
      setLive('polling');
      return;
    }
    setLive('connecting');
    const source = new EventSource('/api/events');
    live.source = source;
    let opened = false;
    source.addEventListener('open', () => {
      const wasDown = opened && live.state !== 'live';
      opened = true;
      setLive('live');
      if (wasDown) refresh(true);
    });
    source.addEventListener('error', () => {
      if (live.state === 'live') refresh(true);
      setLive('polling');
      if (source.readyState === EventSource.CLOSED) setTimeout(connectLive, REFRESH_S * 1000);
    });
    source.addEventListener('summary', onEvent(renderSummary));
    source.addEventListener('deploy', onEvent(applyDeployEvent));
    source.addEventListener('invalidate', onEvent(() => loadCache()));
  }

  setText('refresh-interval', String(REFRESH_S));
  $('refresh-now').addEventListener('click', () => refresh(true));
  refresh(true);
  connectLive();
  setInterval(refresh, REFRESH_S * 1000);
  setInterval(tickAges, 1000);
})();
