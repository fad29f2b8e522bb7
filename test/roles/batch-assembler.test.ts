import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PofrError } from '../../src/errors.js';
import {
  decodeRecords,
  GENESIS_HASH,
  generateSigningKeyPair,
  LIMITS,
  loadPrivateKey,
  type PofrRecord,
  readBatchFrame,
  type SealedBatch,
} from '../../src/protocol/index.js';
import { BatchAssembler } from '../../src/roles/client/batch-assembler.js';
import { Spool } from '../../src/spool/index.js';

const key = loadPrivateKey(generateSigningKeyPair().privatePem);
const rec = (t: number): PofrRecord => ({ type: 'process_exit', t, pid: 100 + t, start_ticks: t });

/** A sink that refuses while `full` is set, as the spool does when it reaches its bound. */
class FlakySink {
  full = false;
  head = { seq: 0, hash: GENESIS_HASH };
  readonly batches: SealedBatch[] = [];
  append(b: SealedBatch) {
    if (this.full) throw new PofrError('POFR_SPOOL_FULL', 'spool is full (test)');
    this.batches.push(b);
    this.head = { seq: b.header.seq, hash: b.hash };
  }
  chainHead() {
    return this.head;
  }
}

test('seals by count and by age, chaining each batch to the previous one', () => {
  const sink = new FlakySink();
  const a = new BatchAssembler({
    hostId: 'h',
    bootId: 'b',
    signingKey: key,
    sink,
    maxRecords: 3,
    maxAgeMs: 1000,
  });
  a.add([rec(1), rec(2)], 0);
  assert.equal(sink.batches.length, 0);
  a.add([rec(3)], 10);
  assert.equal(sink.batches.length, 1, 'sealed at 3 records');
  a.add([rec(4)], 20);
  a.add([], 1020);
  assert.equal(sink.batches.length, 2, 'sealed when the oldest record waited 1 s');
  assert.equal(sink.batches[1].header.prev_hash, sink.batches[0].hash);
  assert.equal(sink.batches[1].header.seq, 2);
});

test('records lost to a full spool become one gap record at the head of the next batch', () => {
  const sink = new FlakySink();
  const losses: number[] = [];
  const a = new BatchAssembler({
    hostId: 'h',
    bootId: 'b',
    signingKey: key,
    sink,
    maxRecords: 2,
    onLoss: (n) => losses.push(n),
  });
  sink.full = true;
  a.add([rec(10), rec(11)], 0);
  a.add([rec(12), rec(13)], 1);
  assert.equal(sink.batches.length, 0);
  assert.deepEqual(losses, [2, 4], 'onLoss reports the total lost since the last spooled batch');
  sink.full = false;
  a.add([rec(20), rec(21)], 2);
  assert.equal(sink.batches.length, 1);
  const records = decodeRecords(readBatchFrame(sink.batches[0].bytes));
  assert.equal(records[0].type, 'gap');
  assert.deepEqual(
    records[0].type === 'gap' && { from: records[0].from, to: records[0].to, dropped: records[0].dropped },
    { from: 10, to: 13, dropped: 4 },
  );
  assert.deepEqual(
    records.slice(1).map((r) => r.t),
    [20, 21],
  );
});

test('an I/O error of the spool loses nothing silently: it is rethrown and counted in the next gap', () => {
  const sink = new FlakySink();
  const a = new BatchAssembler({ hostId: 'h', bootId: 'b', signingKey: key, sink, maxRecords: 2 });
  const append = sink.append.bind(sink);
  sink.append = () => {
    throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
  };
  assert.throws(() => a.add([rec(30), rec(31)], 0), /EIO/);
  sink.append = append;
  a.add([rec(40), rec(41)], 1);
  const records = decodeRecords(readBatchFrame(sink.batches[0].bytes));
  assert.equal(records[0].type, 'gap');
  assert.ok(records[0].type === 'gap' && records[0].dropped === 2 && /EIO/.test(records[0].reason));
  assert.deepEqual(
    records.slice(1).map((r) => r.t),
    [40, 41],
  );
});

/** ~48 MiB of incompressible argv: more than one batch may carry, so the assembler must split it. */
function oversized(): PofrRecord[] {
  return Array.from({ length: 768 }, (_, i) => ({
    type: 'process_start' as const,
    t: 1000 + i,
    proc: {
      pid: 10_000 + i,
      start_ticks: i,
      start: 1000 + i,
      ppid: 1,
      parent_start_ticks: null,
      exe: '/usr/bin/x',
      comm: 'x',
      argv: ['x', randomBytes(48 * 1024).toString('base64')],
      cwd: '/',
      ruid: 0,
      euid: 0,
      rgid: 0,
      egid: 0,
      source: 'sample' as const,
      observer: false,
    },
  }));
}

test('a batch over the size limit is split into batches under it, in order, nothing left out', () => {
  const sink = new FlakySink();
  const a = new BatchAssembler({ hostId: 'h', bootId: 'b', signingKey: key, sink, maxRecords: 10_000 });
  const records = oversized();
  a.add(records, 0);
  assert.equal(a.seal(), 2);
  assert.ok(sink.batches.every((b) => b.bytes.length <= LIMITS.maxBatchBytes));
  const times = sink.batches.flatMap((b) => decodeRecords(readBatchFrame(b.bytes)).map((r) => r.t));
  assert.deepEqual(
    times,
    records.map((r) => r.t),
  );
});

test('when one half of a split batch cannot be spooled, the other still is and the lost half is counted', () => {
  const sink = new FlakySink();
  const a = new BatchAssembler({ hostId: 'h', bootId: 'b', signingKey: key, sink, maxRecords: 10_000 });
  const append = sink.append.bind(sink);
  let calls = 0;
  sink.append = (b: SealedBatch) => {
    if (calls++ === 0) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    append(b);
  };
  a.add(oversized(), 0);
  assert.throws(() => a.seal(), /EIO/);
  assert.equal(sink.batches.length, 1, 'the second half was spooled');
  a.add([rec(5000)], 1);
  a.seal();
  const [gap] = decodeRecords(readBatchFrame(sink.batches[1].bytes));
  assert.ok(gap.type === 'gap' && gap.dropped === 384, JSON.stringify(gap).slice(0, 200));
});

test('batches reach a real spool in order and survive reopening it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-assembler-'));
  try {
    const spool = Spool.open(dir);
    const a = new BatchAssembler({ hostId: 'h', bootId: 'b', signingKey: key, sink: spool, maxRecords: 1 });
    for (let i = 1; i <= 5; i++) a.add([rec(i)], i);
    const reopened = Spool.open(dir);
    assert.deepEqual(
      reopened.pending().map((p) => p.seq),
      [1, 2, 3, 4, 5],
    );
    assert.equal(reopened.chainHead().seq, 5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
