import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { bundleClient } from '../../src/package/index.js';

const work = mkdtempSync(join(tmpdir(), 'pofr-bundle-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('the client bundle holds the client role and none of the server side', async () => {
  const report = await bundleClient(join(work, 'client.cjs'));
  for (const p of ['ssh2', 'zod', 'commander', 'pino'])
    assert.ok(report.packages.includes(p), `${p} is inside`);
  for (const p of ['better-sqlite3', 'pg', 'kysely', 'maxmind', 'cpu-features']) {
    assert.ok(!report.packages.includes(p), `${p} stays out`);
  }
  const code = readFileSync(report.path, 'utf8');
  assert.doesNotMatch(
    code,
    /require\("[^"]*\.node"\)|require\("cpu-features"\)/,
    'no native addon is required',
  );
  assert.ok(report.bytes < 4 * 1024 * 1024, `${report.bytes} bytes`);
});

test('a client entry that reaches the store is refused, naming the importer', async () => {
  const entry = new URL('../../src/ingest/index.js', import.meta.url).pathname;
  await assert.rejects(bundleClient(join(work, 'bad.cjs'), entry), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'POFR_PACKAGE');
    assert.match(
      e.message,
      /would include .*kysely.* \(imported by .*\): the client role must not import server modules/,
    );
    return true;
  });
});
