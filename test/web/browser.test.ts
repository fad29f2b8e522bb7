import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, collectErrors, launchChromium } from '../helpers/chromium.js';
import { type Daemon, pofr, startPofr } from '../helpers/pofr-cli.js';

/**
 * The web UI in real Chromium over a store filled by a real recording: `pofr server run --web`
 * and `pofr client run` as processes, SSH over loopback, while a marked command holds a known file
 * and a TCP connection to 193.0.6.139 (an address DB-IP places in NL). That connection never leaves
 * the machine: it runs inside a network namespace the test makes, where 193.0.6.139 is on loopback.
 */
const root = process.getuid?.() === 0;
const skip = !root
  ? 'needs root: the connection with a country runs in a network namespace of its own (unshare --net)'
  : chromiumMissing();

describe('web UI in Chromium over a real recording', { skip: skip ?? false }, () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-web-e2e-'));
  const data = join(base, 'server');
  const state = join(base, 'client');
  const work = join(base, 'work');
  const marker = `pofr-web-${randomBytes(4).toString('hex')}`;
  const knownFile = join(work, `evidence-${marker}.txt`);
  const daemons: Daemon[] = [];
  let web = '';
  let browser: Browser;
  let processId = 0;
  let markerStart = 0;
  let hostId = '';

  const errorsOf = new Map<Page, string[]>();
  const open = async (path: string): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 950 } });
    errorsOf.set(page, collectErrors(page));
    await page.goto(new URL(path, web).toString());
    return page;
  };
  const count = async (page: Page, testId: string): Promise<number> =>
    Number(
      (/^[\d,]+/.exec((await page.getByTestId(testId).textContent()) ?? '')?.[0] ?? '').replace(/,/g, ''),
    );

  before(async () => {
    mkdirSync(work);
    assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
    const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
    const server = startPofr([
      'server',
      'run',
      '--data',
      data,
      '--listen',
      '127.0.0.1:0',
      '--web',
      '127.0.0.1:0',
      // 193.0.6.139 lives only in the test's namespace: no reverse DNS question goes out for it.
      '--no-rdns',
    ]);
    daemons.push(server);
    const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
    web = (await server.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+\/)"/))[1];
    const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
    const enroll = await pofr([
      'client',
      'enroll',
      '--state',
      state,
      '--server',
      `127.0.0.1:${port}`,
      '--token',
      token,
      '--fingerprint',
      fp,
      '--name',
      'web-e2e',
    ]);
    assert.equal(enroll.code, 0, enroll.stderr);
    const client = startPofr([
      'client',
      'run',
      '--state',
      state,
      '--interval',
      '200',
      '--batch',
      '500',
      '--keyframe',
      '5000',
    ]);
    daemons.push(client);
    await client.waitFor(/pofr client recording/);
    const script = join(base, 'netns.sh');
    writeFileSync(
      script,
      [
        'set -e',
        'ip link set lo up',
        'ip addr add 193.0.6.139/32 dev lo',
        `node -e "const s=require('net').createServer(()=>{}).listen(4433,'193.0.6.139');setTimeout(()=>s.close(),9000).unref()" &`,
        'sleep 0.5',
        `bash -c 'exec 7>"$1"; exec 8<>/dev/tcp/193.0.6.139/4433; sleep 4; :' "$2" "$1"`,
        'kill %1 || true',
      ].join('\n'),
    );
    const run = await new Promise<number | null>((resolve) => {
      const child = spawn('unshare', ['--net', 'bash', script, knownFile, marker], { stdio: 'ignore' });
      child.on('exit', (code) => resolve(code));
    });
    assert.equal(run, 0, 'the marked command ran in its namespace');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await client.stop(), 0, client.stderr());
    browser = await launchChromium();
    // With exact exec capture a command has several images (the shell's fork copies its argv before
    // it execs): the process to open is the one that holds the known file.
    const hits = (await (await fetch(new URL(`/api/search?kind=command&term=${marker}`, web))).json()) as {
      data: { process_id: number; time: number; host_id: string; summary: string }[];
    };
    for (const h of hits.data.filter((x) => x.summary.startsWith('bash -c'))) {
      const d = (await (await fetch(new URL(`/api/processes/${h.process_id}`, web))).json()) as {
        data: { files: { path: string }[] };
      };
      if (d.data.files.some((f) => f.path === knownFile)) {
        processId = h.process_id;
        markerStart = h.time;
        hostId = h.host_id;
      }
    }
    assert.ok(processId > 0, `a process holding ${knownFile} is on record: ${JSON.stringify(hits.data)}`);
  });

  after(async () => {
    await browser?.close();
    for (const d of daemons) await d.stop(5000);
    rmSync(base, { recursive: true, force: true });
  });

  test('the fleet page lists the recorded host', async () => {
    const page = await open('/');
    await page.getByRole('link', { name: 'web-e2e' }).waitFor();
    assert.equal(await page.locator('tr[data-host="web-e2e"] .badge').first().textContent(), 'recording');
    assert.deepEqual(errorsOf.get(page), []);
  });

  test('the host page shows the timeline and the tree; the slider replays the tree as it was', async () => {
    const at = new Date((markerStart + 1_500_000) / 1000).toISOString();
    const page = await open(`/host/${hostId}?at=${at}`);
    await page
      .getByTestId('timeline-count')
      .filter({ hasText: /^[1-9]/ })
      .waitFor();
    assert.ok((await count(page, 'timeline-count')) > 0);
    await page.getByTestId('tree').waitFor();
    assert.ok((await count(page, 'tree-count')) > 1);
    const tree = page.getByTestId('tree');
    await tree.getByText(marker).first().waitFor();
    // To the end of the record: the marked command had exited by then.
    const slider = page.getByRole('slider', { name: 'instant of the tree' });
    await slider.fill((await slider.getAttribute('max'))!);
    await page.waitForURL((u) => u.searchParams.get('at') !== at);
    await tree.getByText(marker).first().waitFor({ state: 'detached' });
    assert.equal(await tree.getByText(marker).count(), 0);
    assert.deepEqual(errorsOf.get(page), []);
  });

  test('the process page shows the known file and the known connection with its country', async () => {
    const page = await open(`/process/${processId}`);
    const files = page.getByTestId('files');
    await files.waitFor();
    // `exec 7>FILE`: bash opens the file on a free fd, moves it to 7 and closes the first: with
    // open and close calls from the kernel both are on record (the brief one and fd 7).
    await files.getByText(knownFile).first().waitFor();
    assert.ok((await files.getByText(knownFile).count()) >= 1);
    const conn = page.getByTestId('endpoints').locator('tr', { hasText: '193.0.6.139:4433' });
    await conn.waitFor();
    assert.match((await conn.textContent()) ?? '', /NL/);
    assert.match((await page.getByTestId('argv').textContent()) ?? '', new RegExp(marker));
    assert.deepEqual(errorsOf.get(page), []);
  });

  test('a filter narrows the timeline, and its URL reopens the same view', async () => {
    const page = await open(`/host/${hostId}?observer=true`);
    await page
      .getByTestId('timeline-count')
      .filter({ hasText: /^[1-9]/ })
      .waitFor();
    const all = await count(page, 'timeline-count');
    await page.getByPlaceholder('command (regex)').fill(marker);
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((u) => u.searchParams.get('command') === marker);
    // Polled from here: the page's CSP allows no string evaluation, so waitForFunction is out.
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      const text = (await page.getByTestId('timeline-count').textContent()) ?? '';
      const n = await count(page, 'timeline-count');
      if (n > 0 && n < all && !text.includes('loading')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const narrowed = await count(page, 'timeline-count');
    assert.ok(narrowed > 0 && narrowed < all, `filtered ${narrowed} of ${all}`);
    // What the filter keeps: the marked command's events, and the record's own context (gaps and
    // the recorder's start/stop/heartbeat events are never filtered away).
    const rows: { kind: string; summary: string }[] = [];
    for (const el of await page.locator('.event').all()) {
      rows.push({
        kind: (await el.getAttribute('data-kind')) ?? '',
        summary: (await el.locator('.summary').textContent()) ?? '',
      });
    }
    assert.ok(rows.length > 0);
    for (const r of rows) {
      // Starts and execs are the command's own images, so they carry its argv and the marker.
      if (r.kind === 'process_start' || r.kind === 'process_exec')
        assert.ok(r.summary.includes(marker), JSON.stringify(r));
    }
    const again = await open(page.url());
    await again
      .getByTestId('timeline-count')
      .filter({ hasText: /^[1-9]/ })
      .waitFor();
    assert.equal(await count(again, 'timeline-count'), narrowed);
    assert.equal(await again.getByPlaceholder('command (regex)').inputValue(), marker);
    assert.deepEqual(errorsOf.get(page), []);
    assert.deepEqual(errorsOf.get(again), []);
  });

  test('a web UI on an address other than loopback without an access token is refused', async () => {
    // Refused before anything listens: no socket is opened on 0.0.0.0.
    const r = await pofr(['web', '--data', data, '--listen', '0.0.0.0:0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /needs an access token; create one with: pofr server token --web/);
  });
});
