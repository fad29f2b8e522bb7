import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isPofrError } from '../../src/errors.js';
import {
  decodeFrontier,
  decodeRecords,
  deriveSealKey,
  encodeFrontier,
  eraseFrontier,
  FORK_PROTOCOL_VERSION,
  frontierFromSeed,
  GENESIS_HASH,
  generateSigningKeyPair,
  loadPrivateKey,
  loadPublicKey,
  MAX_SEALED_SEQ,
  newSealSeed,
  type PofrRecord,
  PROTOCOL_VERSION,
  readBatchFrame,
  SEAL_TREE_DEPTH,
  SEALED_PROTOCOL_VERSION,
  type SealFrontier,
  sealBatch,
  sealKeyAt,
  verifyBatchFrame,
  verifyBatchSeal,
} from '../../src/protocol/index.js';

const SEED = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const keys = generateSigningKeyPair();
const priv = loadPrivateKey(keys.privatePem);
const pub = loadPublicKey(keys.publicPem);
const recs = (tag: string): PofrRecord[] => [{ type: 'endpoint_close', t: 1_790_000_000_000_000, key: tag }];

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isPofrError(e), `expected a PofrError, got ${String(e)}`);
    return e.code;
  }
  return 'no error';
}

/** The first and last leaf under a frontier node. */
function spanOf(n: { level: number; index: number }) {
  const width = 2 ** (SEAL_TREE_DEPTH - n.level);
  return { from: n.index * width, to: (n.index + 1) * width - 1 };
}

describe('forward-secure seal keys', () => {
  test('golden vectors: HMAC-SHA256 down a tree of depth 48 from the seed (checked against an independent script)', () => {
    assert.equal(
      deriveSealKey(SEED, 1).toString('hex'),
      'd21a2e2caf253fb6942f86a30d6ccd91e0f7c82b9e6bc60f1614e097d9dcfc47',
    );
    assert.equal(
      deriveSealKey(SEED, 2).toString('hex'),
      'ae803c566c89284bdbbe1e74b4af4875671edc3c8c99a6a70dfea5b020a89315',
    );
    assert.equal(
      deriveSealKey(SEED, 1000).toString('hex'),
      '8932c30e12d01102f4537df7274ab76b39ffc92f09720e422374470d19cd9351',
    );
  });

  test('the client, evolving its frontier batch by batch, derives the keys the server derives from the seed', () => {
    const seed = newSealSeed();
    let f = frontierFromSeed(seed);
    let widest = 0;
    for (let seq = 1; seq <= 600; seq++) {
      const { key, rest } = sealKeyAt(f, seq);
      assert.deepEqual(key, deriveSealKey(seed, seq), `seq ${seq}`);
      widest = Math.max(widest, rest.nodes.length);
      f = rest;
    }
    assert.ok(widest <= SEAL_TREE_DEPTH + 1, `the frontier stays small: ${widest} keys at most`);
    // Skipping ahead (a chain restarted past a lost head) works, and far ahead too.
    for (const seq of [777, 4096, 2 ** 32 + 5, 2 ** 40]) {
      const { key, rest } = sealKeyAt(f, seq);
      assert.deepEqual(key, deriveSealKey(seed, seq));
      f = rest;
    }
  });

  test('once n is sealed, nothing the client keeps reaches n or any number before it', () => {
    let f: SealFrontier = frontierFromSeed(SEED);
    for (let seq = 1; seq <= 37; seq++) f = sealKeyAt(f, seq).rest;
    assert.equal(f.next, 38);
    for (const node of f.nodes)
      assert.ok(spanOf(node).from >= 38, `node ${node.level}/${node.index} reaches back`);
    for (const seq of [1, 20, 37])
      assert.equal(
        codeOf(() => sealKeyAt(f, seq)),
        'POFR_BATCH_SEAL',
      );
    // Every key of the frontier differs from every key the server derives for 1…37.
    const past = new Set(Array.from({ length: 37 }, (_, i) => deriveSealKey(SEED, i + 1).toString('hex')));
    for (const node of f.nodes) assert.ok(!past.has(node.key.toString('hex')));
  });

  test('the frontier round-trips through its stored form; erasing zeroes what the next one dropped', () => {
    const f1 = frontierFromSeed(SEED, 5);
    const decoded = decodeFrontier(JSON.parse(JSON.stringify(encodeFrontier(f1))));
    assert.deepEqual(decoded, f1);
    const { rest } = sealKeyAt(decoded, 5);
    const dropped = decoded.nodes.filter((n) => !rest.nodes.includes(n));
    assert.ok(dropped.length > 0);
    eraseFrontier(decoded, rest);
    for (const n of dropped)
      assert.ok(
        n.key.every((b) => b === 0),
        'dropped keys are zeroed',
      );
    assert.ok(
      rest.nodes.every((n) => n.key.some((b) => b !== 0)),
      'kept keys are intact',
    );
    assert.throws(() => decodeFrontier({ next: 1, nodes: [[1, 0, 'zz']] }), /not a seal frontier/);
  });
});

describe('sealed batches (protocol v2 to v4)', () => {
  const seal = (seq: number, f: SealFrontier, tag = 'k') =>
    sealBatch(
      { host_id: 'host-a', boot_id: 'b', seq, prev_hash: GENESIS_HASH, records: recs(tag) },
      priv,
      sealKeyAt(f, seq).key,
    );

  test('a sealed batch verifies its signature and its seal; the header says so', () => {
    const b = seal(1, frontierFromSeed(SEED));
    const frame = readBatchFrame(b.bytes);
    assert.equal(frame.header.v, PROTOCOL_VERSION);
    assert.equal(frame.header.seal, 'fss1');
    assert.equal(frame.seal?.length, 32);
    verifyBatchFrame(frame, pub);
    verifyBatchSeal(frame, SEED);
    assert.equal(b.hash, frame.hash, 'the chain link is the hash of the signed bytes, seal aside');
  });

  test('version 2 and 3 batches (clients from before process_fork, process_exec_delta) still read; version 4 carries both', () => {
    const f = frontierFromSeed(SEED);
    const fork: PofrRecord = {
      type: 'process_fork',
      t: 1_790_000_000_000_000,
      pid: 20,
      start_ticks: 7,
      ppid: 10,
      parent_start_ticks: 3,
      observer: false,
    };
    const exec: PofrRecord = {
      type: 'process_exec_delta',
      t: 1_790_000_000_000_100,
      pid: 20,
      start_ticks: 7,
      exe: '/usr/bin/id',
      comm: 'id',
      argv: ['id', '-u', { b64: Buffer.from([0xff, 0x0a]).toString('base64') }],
      argv_source: 'probe',
      argv_complete: true,
      euid: 0,
    };
    const make = (records: PofrRecord[], version?: 2 | 3) =>
      readBatchFrame(
        sealBatch(
          { host_id: 'host-a', boot_id: 'b', seq: 1, prev_hash: GENESIS_HASH, records, version },
          priv,
          sealKeyAt(f, 1).key,
        ).bytes,
      );
    const v2 = make(recs('old'), SEALED_PROTOCOL_VERSION);
    assert.equal(v2.header.v, 2);
    verifyBatchSeal(v2, SEED);
    assert.deepEqual(decodeRecords(v2), recs('old'));
    const v3 = make([fork], FORK_PROTOCOL_VERSION);
    assert.equal(v3.header.v, 3);
    verifyBatchSeal(v3, SEED);
    assert.deepEqual(decodeRecords(v3), [fork]);
    const v4 = make([fork, exec]);
    assert.equal(v4.header.v, PROTOCOL_VERSION);
    assert.equal(PROTOCOL_VERSION, 4);
    assert.deepEqual(decodeRecords(v4), [fork, exec]);
  });

  test('an intruder with the client state after batch 3 re-signs a rewritten batch 3: the seal gives it away', () => {
    let f = frontierFromSeed(SEED);
    for (let seq = 1; seq <= 3; seq++) f = sealKeyAt(f, seq).rest;
    // The intruder holds the signing key and the frontier for 4 on: the best seal key it has is 4's.
    const rewritten = sealBatch(
      { host_id: 'host-a', boot_id: 'b', seq: 3, prev_hash: GENESIS_HASH, records: recs('forged') },
      priv,
      sealKeyAt(f, 4).key,
    );
    const frame = readBatchFrame(rewritten.bytes);
    verifyBatchFrame(frame, pub);
    assert.equal(
      codeOf(() => verifyBatchSeal(frame, SEED)),
      'POFR_BATCH_SEAL',
    );
    // What it can do is seal batch 4 and later: those verify (the threat sealing does not answer).
    verifyBatchSeal(readBatchFrame(seal(4, f).bytes), SEED);
  });

  test('unsealed batches: read and accepted for a host without a seed, refused for a host that seals', () => {
    const v1 = sealBatch(
      { host_id: 'host-a', boot_id: 'b', seq: 1, prev_hash: GENESIS_HASH, records: recs('x') },
      priv,
    );
    const frame = readBatchFrame(v1.bytes);
    assert.equal(frame.header.v, 1);
    assert.equal(frame.seal, null);
    verifyBatchSeal(frame, null);
    assert.equal(
      codeOf(() => verifyBatchSeal(frame, SEED)),
      'POFR_BATCH_SEAL',
    );
  });

  test('a seal stripped, cut, or added to an unsealed batch is a malformed batch', () => {
    const b = seal(1, frontierFromSeed(SEED));
    assert.equal(
      codeOf(() => readBatchFrame(b.bytes.subarray(0, b.bytes.length - 34))),
      'POFR_BATCH_MALFORMED',
    );
    assert.equal(
      codeOf(() => readBatchFrame(b.bytes.subarray(0, b.bytes.length - 1))),
      'POFR_BATCH_MALFORMED',
    );
    const v1 = sealBatch(
      { host_id: 'h', boot_id: 'b', seq: 1, prev_hash: GENESIS_HASH, records: recs('x') },
      priv,
    );
    const padded = Buffer.concat([v1.bytes, Buffer.from([0, 32]), Buffer.alloc(32)]);
    assert.equal(
      codeOf(() => readBatchFrame(padded)),
      'POFR_BATCH_MALFORMED',
    );
    const flipped = Buffer.from(b.bytes);
    flipped[flipped.length - 1] ^= 1;
    assert.equal(
      codeOf(() => verifyBatchSeal(readBatchFrame(flipped), SEED)),
      'POFR_BATCH_SEAL',
    );
  });
});

test("the server's derivation gives every key the client's frontier gives, whatever order and however many seeds it derives for", () => {
  const seeds = [newSealSeed(), newSealSeed(), newSealSeed()];
  const clientKeys = seeds.map((seed) => {
    const keys = new Map<number, string>();
    let f = frontierFromSeed(seed);
    for (let seq = 1; seq <= 300; seq++) {
      const { key, rest } = sealKeyAt(f, seq);
      keys.set(seq, key.toString('hex'));
      f = rest;
    }
    return keys;
  });
  // In order, seeds interleaved (as a server's hosts are), then backwards, then jumping about.
  const orders = [
    Array.from({ length: 300 }, (_, i) => i + 1),
    Array.from({ length: 300 }, (_, i) => 300 - i),
    [1, 256, 2, 255, 128, 129, 127, 300, 64, 65, 1, 300],
  ];
  for (const order of orders) {
    for (const seq of order) {
      for (const [i, seed] of seeds.entries()) {
        assert.equal(
          deriveSealKey(seed, seq).toString('hex'),
          clientKeys[i].get(seq),
          `seed ${i} seq ${seq}`,
        );
      }
    }
  }
  // Far apart, up to the last number with a key: the same as walking down from the seed.
  for (const seq of [2 ** 20, 2 ** 40 + 7, MAX_SEALED_SEQ, 3]) {
    assert.equal(
      deriveSealKey(seeds[0], seq).toString('hex'),
      sealKeyAt(frontierFromSeed(seeds[0], seq), seq).key.toString('hex'),
    );
  }
  // A key handed out is the caller's: changing it changes nothing the next derivation gives.
  const k = deriveSealKey(seeds[1], 5);
  k.fill(0);
  assert.equal(deriveSealKey(seeds[1], 5).toString('hex'), clientKeys[1].get(5));
});
