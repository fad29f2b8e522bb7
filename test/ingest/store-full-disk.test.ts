import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { ingestBatch, verifyStore } from '../../src/ingest/index.js';
import type { PofrRecord, SealedBatch } from '../../src/protocol/index.js';
import { openStore } from '../../src/store/index.js';
import { TINY_DISK_SKIP, withTinyDisk } from '../helpers/tiny-disk.js';
import { addHost, countRows, file, proc, T0 } from './host-fixture.js';

test('a full disk under the SQLite store: the batch is not acknowledged, nothing stored is harmed, and it goes in once there is room', {
  skip: TINY_DISK_SKIP,
}, async () => {
  // 2 MiB: the empty schema, with its indexes for the web UI, must fit with room for a few batches.
  await withTinyDisk('2m', async (mnt) => {
    const store = await openStore({ kind: 'sqlite', path: join(mnt, 'pofr.db') });
    try {
      const host = await addHost(store);
      let st = 1;
      const batchOfFiles = (): SealedBatch => {
        const records: PofrRecord[] = [];
        for (let p = 0; p < 4; p++, st++) {
          const pid = 1000 + st;
          records.push({ type: 'process_start', t: T0 + st * 10_000, proc: proc(pid, st) });
          for (let fd = 3; fd < 40; fd++) {
            const path = `/srv/${randomBytes(90).toString('base64url')}`;
            records.push({ type: 'file_open', t: T0 + st * 10_000 + fd, file: file(pid, st, fd, path) });
          }
        }
        return host.next(records);
      };

      let accepted = 0;
      let failed: { batch: SealedBatch; error: unknown } | undefined;
      for (let i = 0; i < 500 && !failed; i++) {
        const batch = batchOfFiles();
        try {
          const r = await ingestBatch(store, batch.bytes, { principal: host.hostId });
          assert.equal(r.status, 'accepted');
          accepted++;
        } catch (error) {
          failed = { batch, error };
        }
      }
      assert.ok(failed, 'the disk filled up');
      assert.equal((failed.error as { code?: string }).code, 'SQLITE_FULL', String(failed.error));
      assert.ok(accepted > 0);
      // Thrown, so the SSH server sends no ACK and the client keeps the batch; not a refusal.
      assert.equal(await countRows(store, 'batches'), accepted);
      assert.equal(await countRows(store, 'refused_batches'), 0);

      // More room (an operator freed space): the same bytes go in, the chain continues, all verifies.
      execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
      const again = await ingestBatch(store, failed.batch.bytes, { principal: host.hostId });
      assert.equal(again.status, 'accepted');
      assert.equal(again.status === 'accepted' && again.chain, 'ok');
      assert.equal(await countRows(store, 'batches'), accepted + 1);
      const [report] = await verifyStore(store);
      assert.equal(report.batches, accepted + 1);
      assert.equal(report.ok, true, JSON.stringify(report.failures.slice(0, 3)));
    } finally {
      await store.close();
    }
  });
});
