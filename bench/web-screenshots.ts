import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { search } from '../src/query/index.js';
import { openStore, readStoreConfig } from '../src/store/index.js';
import { startWeb } from '../src/web/index.js';
import { launchChromium } from './chromium-launch.js';

/**
 * The README's screenshots, from a seeded store (`npm run seed`): each page at the seeded
 * intrusion. `node dist/bench/web-screenshots.js DATA_DIR docs/img`
 */
const [dataDir, outDir = 'docs/img'] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: node dist/bench/web-screenshots.js DATA_DIR [OUT_DIR]');
const store = await openStore(readStoreConfig(dataDir));
const web = await startWeb({ store, host: '127.0.0.1', port: 0, log: () => {} });
const browser = await launchChromium();
try {
  mkdirSync(outDir, { recursive: true });
  const iso = (us: number) =>
    new Date(us / 1000).toISOString().replace('Z', `${String(us % 1000).padStart(3, '0')}Z`);
  const [implant] = await search(store, { kind: 'command', term: '/tmp/.X11-unix/.kd' });
  const [pkexec] = (await search(store, { kind: 'command', term: 'pkexec' })).filter(
    (h) => h.comm === 'pkexec',
  );
  if (!implant)
    throw new Error('no seeded intrusion in this store (npm run seed puts one on the fifth host)');
  const t = implant.time;
  const host = implant.host_id;
  const pages: [string, string, string?][] = [
    ['fleet', '/'],
    [
      'host',
      `/host/${host}?from=${iso(t - 3_600_000_000)}&to=${iso(t + 3_600_000_000)}&at=${iso(t + 62_000_000)}&process=${pkexec?.process_id ?? ''}`,
      'timeline-count',
    ],
    ['process', `/process/${pkexec?.process_id ?? implant.process_id}`],
    ['network', `/network?host=${host}`, 'endpoints'],
    ['search', '/search?kind=path&term=/etc/shadow', 'hits'],
    ['diff', `/diff?a=${host}&at_a=${iso(t - 600_000_000)}&at_b=${iso(t + 120_000_000)}`],
  ];
  for (const [name, path, ready] of pages) {
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, colorScheme: 'light' });
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(new URL(path, web.url).toString());
    if (ready) await page.getByTestId(ready).first().waitFor({ timeout: 60_000 });
    await page.waitForLoadState('networkidle');
    await page.waitForTimeout(500);
    const file = resolve(outDir, `${name}.png`);
    await page.screenshot({ path: file });
    console.log(file, errors.length === 0 ? '' : `console errors: ${errors.join('; ')}`);
    await page.close();
  }
} finally {
  await browser.close();
  await web.close();
  await store.close();
}
