import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isPofrError } from '../../src/errors.js';
import {
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  type SealedBatch,
  sealBatch,
} from '../../src/protocol/index.js';
import { Spool } from '../../src/spool/index.js';

const key = loadPrivateKey(generateSigningKeyPair().privatePem);
const dirs: string[] = [];

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'pofr-spool-'));
  dirs.push(d);
  return join(d, 'spool');
}

/** Seals `n` chained batches starting after `head`. */
function chain(n: number, head = { seq: 0, hash: GENESIS_HASH }, filler = 0): SealedBatch[] {
  const out: SealedBatch[] = [];
  let { seq, hash } = head;
  for (let i = 0; i < n; i++) {
    seq++;
    const b = sealBatch(
      {
        host_id: 'h-1',
        boot_id: 'boot-1',
        seq,
        prev_hash: hash,
        records: [
          { type: 'endpoint_close', t: 1_790_000_000_000_000 + seq, key: `k${seq}-${'x'.repeat(filler)}` },
        ],
      },
      key,
    );
    out.push(b);
    hash = b.hash;
  }
  return out;
}

const batchFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.pofrb'));

describe('Spool', () => {
  test('a new spool is empty, private, and starts the chain at genesis', () => {
    const dir = tempDir();
    const spool = Spool.open(dir);
    assert.deepEqual(spool.chainHead(), { seq: 0, hash: GENESIS_HASH });
    assert.equal(spool.depth(), 0);
    assert.equal(spool.sizeBytes(), 0);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(spool.warnings(), []);
  });

  test('pending() is FIFO by seq, read() returns the exact bytes, ack() removes one file', () => {
    const dir = tempDir();
    const spool = Spool.open(dir);
    const batches = chain(3);
    for (const b of batches) spool.append(b);
    assert.deepEqual(
      spool.pending().map((p) => p.seq),
      [1, 2, 3],
    );
    assert.deepEqual(spool.pending()[1].read(), batches[1].bytes);
    assert.equal(
      spool.sizeBytes(),
      batches.reduce((n, b) => n + b.bytes.length, 0),
    );
    assert.deepEqual(spool.chainHead(), { seq: 3, hash: batches[2].hash });

    spool.ack(1);
    spool.ack(1);
    assert.deepEqual(
      spool.pending().map((p) => p.seq),
      [2, 3],
    );
    assert.deepEqual(batchFiles(dir), ['00000000000000000002.pofrb', '00000000000000000003.pofrb']);
    assert.equal(spool.depth(), 2);
    // Acked batches are gone but the head remembers them.
    spool.ack(2);
    spool.ack(3);
    assert.equal(spool.depth(), 0);
    assert.deepEqual(Spool.open(dir).chainHead(), { seq: 3, hash: batches[2].hash });
  });

  test('refuses a batch that does not extend the chain head', () => {
    const spool = Spool.open(tempDir());
    const [b1, b2] = chain(2);
    spool.append(b1);
    assert.throws(
      () => spool.append(b1),
      (e) => isPofrError(e) && e.code === 'POFR_BATCH_CHAIN',
    );
    const fork = chain(1, { seq: 1, hash: 'f'.repeat(64) })[0];
    assert.throws(
      () => spool.append(fork),
      (e) => isPofrError(e) && e.code === 'POFR_BATCH_CHAIN',
    );
    spool.append(b2);
    assert.equal(spool.depth(), 2);
  });

  test('reopening keeps pending batches and the chain head', () => {
    const dir = tempDir();
    const batches = chain(4);
    const first = Spool.open(dir);
    for (const b of batches) first.append(b);
    first.ack(1);
    const again = Spool.open(dir);
    assert.deepEqual(
      again.pending().map((p) => p.seq),
      [2, 3, 4],
    );
    assert.deepEqual(again.chainHead(), { seq: 4, hash: batches[3].hash });
    assert.equal(again.sizeBytes(), first.sizeBytes());
  });

  test('after a crash between the batch file and the head file, the head is rebuilt from the batch; half-written files vanish', () => {
    const dir = tempDir();
    const batches = chain(3);
    const spool = Spool.open(dir);
    spool.append(batches[0]);
    const headAfterOne = readFileSync(join(dir, 'chain-head.json'));
    spool.append(batches[1]);
    // Crash simulation: batch 2 reached its rename, the head file still names batch 1, and batch 3
    // was still a .tmp (so its append never returned).
    writeFileSync(join(dir, 'chain-head.json'), headAfterOne);
    writeFileSync(join(dir, '00000000000000000003.pofrb.tmp'), batches[2].bytes.subarray(0, 10));
    writeFileSync(join(dir, 'chain-head.json.tmp'), '{"seq":');

    const reopened = Spool.open(dir);
    assert.deepEqual(reopened.chainHead(), { seq: 2, hash: batches[1].hash });
    assert.deepEqual(
      reopened.pending().map((p) => p.seq),
      [1, 2],
    );
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.endsWith('.tmp')),
      [],
    );
    // The chain continues where the batch files say it is.
    reopened.append(batches[2]);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'chain-head.json'), 'utf8')), {
      seq: 3,
      hash: batches[2].hash,
    });
  });

  test('a full spool throws POFR_SPOOL_FULL and keeps what it had', () => {
    const dir = tempDir();
    const batches = chain(3, undefined, 2000);
    const limit = batches[0].bytes.length + batches[1].bytes.length + 10;
    const spool = Spool.open(dir, { maxBytes: limit });
    spool.append(batches[0]);
    spool.append(batches[1]);
    assert.throws(
      () => spool.append(batches[2]),
      (e) => isPofrError(e) && e.code === 'POFR_SPOOL_FULL' && /exceed/.test(e.message),
    );
    assert.deepEqual(
      spool.pending().map((p) => p.seq),
      [1, 2],
    );
    assert.deepEqual(spool.chainHead(), { seq: 2, hash: batches[1].hash });
    assert.equal(batchFiles(dir).length, 2);
    // Room again after an ACK: the same batch now fits.
    spool.ack(1);
    spool.append(batches[2]);
    assert.deepEqual(
      spool.pending().map((p) => p.seq),
      [2, 3],
    );
  });

  test('quarantine moves a batch to rejected/ with its reason and unblocks the queue', () => {
    const dir = tempDir();
    const batches = chain(2);
    const spool = Spool.open(dir);
    for (const b of batches) spool.append(b);
    spool.quarantine(1, 'POFR_BATCH_SIGNATURE: signature does not verify');
    spool.quarantine(1, 'again');
    assert.deepEqual(
      spool.pending().map((p) => p.seq),
      [2],
    );
    assert.equal(spool.sizeBytes(), batches[1].bytes.length);
    const rejected = join(dir, 'rejected');
    assert.deepEqual(readFileSync(join(rejected, '00000000000000000001.pofrb')), batches[0].bytes);
    assert.match(
      readFileSync(join(rejected, '00000000000000000001.pofrb.reason.txt'), 'utf8'),
      /POFR_BATCH_SIGNATURE: signature does not verify/,
    );
    assert.deepEqual(
      Spool.open(dir)
        .pending()
        .map((p) => p.seq),
      [2],
    );
  });

  test('corrupt batch files found on open are quarantined with a warning, never a crash', () => {
    const dir = tempDir();
    const batches = chain(3);
    const spool = Spool.open(dir);
    for (const b of batches) spool.append(b);
    writeFileSync(join(dir, '00000000000000000002.pofrb'), Buffer.from('not a batch at all'));
    // A file whose name and header disagree is as untrustworthy as garbage.
    writeFileSync(join(dir, '00000000000000000009.pofrb'), batches[0].bytes);

    const reopened = Spool.open(dir);
    assert.deepEqual(
      reopened.pending().map((p) => p.seq),
      [1, 3],
    );
    assert.equal(reopened.warnings().length, 2);
    assert.match(reopened.warnings().join('\n'), /00000000000000000002\.pofrb.*magic/);
    assert.match(reopened.warnings().join('\n'), /00000000000000000009\.pofrb.*seq 1/);
    assert.ok(existsSync(join(dir, 'rejected', '00000000000000000002.pofrb')));
    assert.ok(existsSync(join(dir, 'rejected', '00000000000000000009.pofrb.reason.txt')));
    assert.deepEqual(reopened.chainHead(), { seq: 3, hash: batches[2].hash });
  });

  test('a lost head file is rebuilt from the newest batch and reported', () => {
    const dir = tempDir();
    const batches = chain(2);
    const spool = Spool.open(dir);
    for (const b of batches) spool.append(b);
    writeFileSync(join(dir, 'chain-head.json'), 'garbage');
    const reopened = Spool.open(dir);
    assert.deepEqual(reopened.chainHead(), { seq: 2, hash: batches[1].hash });
    assert.match(reopened.warnings().join('\n'), /chain-head\.json/);
  });

  test('inspect() counts a spool without changing it', () => {
    const dir = tempDir();
    assert.deepEqual(Spool.inspect(dir), { depth: 0, sizeBytes: 0, head: null, seals: false });
    const batches = chain(2);
    const spool = Spool.open(dir);
    for (const b of batches) spool.append(b);
    writeFileSync(join(dir, '00000000000000000003.pofrb.tmp'), 'in progress');
    assert.deepEqual(Spool.inspect(dir), {
      depth: 2,
      sizeBytes: spool.sizeBytes(),
      head: { seq: 2, hash: batches[1].hash },
      seals: false,
    });
    assert.ok(existsSync(join(dir, '00000000000000000003.pofrb.tmp')));
  });
});
