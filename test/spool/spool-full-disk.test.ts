import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isPofrError } from '../../src/errors.js';
import {
  decodeRecords,
  generateSigningKeyPair,
  loadPrivateKey,
  readBatchFrame,
  type SealedBatch,
  sealBatch,
} from '../../src/protocol/index.js';
import { BatchAssembler } from '../../src/roles/client/batch-assembler.js';
import { Spool } from '../../src/spool/index.js';
import { TINY_DISK_SKIP, withTinyDisk } from '../helpers/tiny-disk.js';

const key = loadPrivateKey(generateSigningKeyPair().privatePem);

/** ~16 KiB of incompressible text per batch, so a handful fill the disk. */
function sealNext(head: { seq: number; hash: string }): SealedBatch {
  return sealBatch(
    {
      host_id: 'h-1',
      boot_id: 'boot-1',
      seq: head.seq + 1,
      prev_hash: head.hash,
      records: Array.from({ length: 64 }, (_, i) => ({
        type: 'endpoint_close' as const,
        t: 1_790_000_000_000_000 + head.seq * 10 + i,
        key: randomBytes(192).toString('base64'),
      })),
    },
    key,
  );
}

test(
  'a full file system under the spool: POFR_SPOOL_FULL, no half-written file, nothing accepted lost',
  {
    skip: TINY_DISK_SKIP,
  },
  () =>
    withTinyDisk('256k', (mnt) => {
      const dir = join(mnt, 'spool');
      const spool = Spool.open(dir, { maxBytes: 1 << 30 });
      const accepted = new Map<number, string>();
      let failure: unknown;
      for (let i = 0; i < 100 && failure === undefined; i++) {
        const batch = sealNext(spool.chainHead());
        try {
          spool.append(batch);
          accepted.set(batch.header.seq, batch.hash);
        } catch (e) {
          failure = e;
        }
      }
      assert.ok(
        isPofrError(failure) && failure.code === 'POFR_SPOOL_FULL',
        `expected POFR_SPOOL_FULL, got ${String(failure)}`,
      );
      assert.match(failure.message, /file system is full \(ENOSPC\)/);
      assert.ok(accepted.size > 0, 'some batches fit before the disk filled');
      assert.deepEqual(
        readdirSync(dir).filter((f) => f.endsWith('.tmp')),
        [],
        'no half-written file holds on to space',
      );

      // Memory and directory agree: a restart finds exactly the accepted batches and the same head.
      const reopened = Spool.open(dir, { maxBytes: 1 << 30 });
      assert.deepEqual(
        reopened.pending().map((p) => p.seq),
        [...accepted.keys()],
      );
      assert.deepEqual(reopened.chainHead(), spool.chainHead());
      assert.equal(reopened.chainHead().hash, accepted.get(reopened.chainHead().seq));

      // Once the server acknowledges, space returns and the chain continues where it stopped.
      for (const p of reopened.pending().slice(0, 3)) reopened.ack(p.seq);
      const next = sealNext(reopened.chainHead());
      reopened.append(next);
      assert.equal(reopened.chainHead().seq, next.header.seq);
    }),
);

test(
  'the recorder keeps going on a full disk and its next batch carries a gap for what it lost',
  {
    skip: TINY_DISK_SKIP,
  },
  () =>
    withTinyDisk('256k', (mnt) => {
      const spool = Spool.open(join(mnt, 'spool'), { maxBytes: 1 << 30 });
      const losses: string[] = [];
      const assembler = new BatchAssembler({
        hostId: 'h-1',
        bootId: 'boot-1',
        signingKey: key,
        sink: spool,
        maxRecords: 64,
        onLoss: (_n, reason) => losses.push(reason),
      });
      let t = 1_790_000_000_000_000;
      const records = () =>
        Array.from({ length: 64 }, () => ({
          type: 'endpoint_close' as const,
          t: t++,
          key: randomBytes(192).toString('base64'),
        }));
      for (let i = 0; i < 40; i++) assembler.add(records(), i);
      assert.ok(losses.length > 0, 'the disk filled up');
      assert.match(losses[0], /ENOSPC/);

      for (const p of spool.pending()) spool.ack(p.seq);
      assembler.add(records(), 100);
      const last = spool.pending().at(-1);
      assert.ok(last, 'a batch was spooled once space returned');
      const first = decodeRecords(readBatchFrame(last.read()))[0];
      assert.equal(first.type, 'gap');
      assert.ok(first.type === 'gap' && (first.dropped ?? 0) >= 64 && /ENOSPC/.test(first.reason));
    }),
);
