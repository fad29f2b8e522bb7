import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isPofrError } from '../../src/errors.js';
import {
  decodeRecords,
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  loadPublicKey,
  openBatch,
  type PofrRecord,
  readBatchFrame,
  sealBatch,
  verifyBatchFrame,
} from '../../src/protocol/index.js';

const keys = generateSigningKeyPair();
const priv = loadPrivateKey(keys.privatePem);
const pub = loadPublicKey(keys.publicPem);

function records(n = 3): PofrRecord[] {
  const out: PofrRecord[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      type: 'process_start',
      t: 1_790_000_000_000_000 + i,
      proc: {
        pid: 100 + i,
        start_ticks: 5000 + i,
        start: 1_790_000_000_000_000 + i,
        ppid: 1,
        parent_start_ticks: null,
        exe: '/usr/bin/bash',
        comm: 'bash',
        argv: [
          'bash',
          '-c',
          `echo "it's" %s\n${i}`,
          { b64: Buffer.from([0x66, 0xff, 0xfe]).toString('base64') },
        ],
        cwd: '/tmp',
        ruid: 0,
        euid: 0,
        rgid: 0,
        egid: 0,
        source: 'sample',
        observer: false,
      },
    });
  }
  return out;
}

function seal(seq = 1, prev = GENESIS_HASH, recs = records()) {
  return sealBatch({ host_id: 'host-a', boot_id: 'boot-1', seq, prev_hash: prev, records: recs }, priv);
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isPofrError(e), `expected a PofrError, got ${String(e)}`);
    return e.code;
  }
  return 'no error';
}

describe('batch protocol v1', () => {
  test('round trip keeps every record exactly, including non-UTF-8 bytes', () => {
    const recs = records(5);
    const sealed = seal(1, GENESIS_HASH, recs);
    const opened = openBatch(sealed.bytes, pub);
    assert.deepEqual(opened.records, recs);
    assert.equal(opened.hash, sealed.hash);
    assert.equal(opened.header.record_count, 5);
    assert.equal(opened.header.t_from, recs[0].t);
    assert.equal(opened.header.t_to, recs[4].t);
  });

  test('the chain links each batch to the hash of the one before', () => {
    const first = seal(1);
    const second = seal(2, first.hash);
    assert.equal(readBatchFrame(second.bytes).header.prev_hash, first.hash);
    assert.notEqual(first.hash, second.hash);
  });

  test('changing any single byte makes the batch fail with a clear reason', () => {
    const sealed = seal();
    const seen = new Set<string>();
    for (let i = 0; i < sealed.bytes.length; i++) {
      const bad = Buffer.from(sealed.bytes);
      bad[i] ^= 0x01;
      const code = codeOf(() => openBatch(bad, pub));
      assert.notEqual(code, 'no error', `flipping byte ${i} of ${sealed.bytes.length} went unnoticed`);
      seen.add(code);
    }
    assert.ok(seen.has('POFR_BATCH_SIGNATURE'));
    assert.ok(seen.has('POFR_BATCH_MALFORMED'));
  });

  test('a batch signed by another key is refused as a signature failure', () => {
    const other = loadPrivateKey(generateSigningKeyPair().privatePem);
    const forged = sealBatch(
      { host_id: 'host-a', boot_id: 'b', seq: 1, prev_hash: GENESIS_HASH, records: records() },
      other,
    );
    assert.equal(
      codeOf(() => verifyBatchFrame(readBatchFrame(forged.bytes), pub)),
      'POFR_BATCH_SIGNATURE',
    );
  });

  test('truncated, empty and oversize inputs are refused before parsing', () => {
    const sealed = seal();
    assert.equal(
      codeOf(() => readBatchFrame(sealed.bytes.subarray(0, sealed.bytes.length - 1))),
      'POFR_BATCH_MALFORMED',
    );
    assert.equal(
      codeOf(() => readBatchFrame(Buffer.alloc(0))),
      'POFR_BATCH_MALFORMED',
    );
    assert.equal(
      codeOf(() => readBatchFrame(Buffer.from('GET / HTTP/1.1\r\n\r\n'))),
      'POFR_BATCH_MALFORMED',
    );
    assert.equal(
      codeOf(() => readBatchFrame(Buffer.alloc(33 * 1024 * 1024))),
      'POFR_BATCH_TOO_LARGE',
    );
  });

  test('records that do not match their schema are refused with the record index', () => {
    const bogus = [
      records(1)[0],
      { type: 'process_exit', t: 1, pid: -5, start_ticks: 1 },
    ] as unknown as PofrRecord[];
    const sealed = seal(1, GENESIS_HASH, bogus);
    const frame = readBatchFrame(sealed.bytes);
    verifyBatchFrame(frame, pub);
    assert.throws(() => decodeRecords(frame), /record 1: pid/);
  });

  test('a 100 kB argument and hostile characters survive the round trip', () => {
    const big = 'A'.repeat(100 * 1024);
    const recs = records(1);
    const proc = (recs[0] as Extract<PofrRecord, { type: 'process_start' }>).proc;
    const hostile = { ...proc, argv: [big, '\u001b[31m', "'; DROP TABLE processes; --", '%n%s%x'] };
    const sealed = seal(1, GENESIS_HASH, [{ type: 'process_start', t: 1, proc: hostile }]);
    const opened = openBatch(sealed.bytes, pub);
    assert.deepEqual(opened.records[0], { type: 'process_start', t: 1, proc: hostile });
  });
});
