import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  decodeFrontier,
  deriveSealKey,
  generateSigningKeyPair,
  loadPrivateKey,
  newSealSeed,
  readBatchFrame,
  SEAL_TREE_DEPTH,
  type SealedBatch,
  sealBatch,
  verifyBatchSeal,
} from '../../src/protocol/index.js';
import { Spool } from '../../src/spool/index.js';

const key = loadPrivateKey(generateSigningKeyPair().privatePem);
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'pofr-spool-seal-'));
  dirs.push(d);
  return join(d, 'spool');
}

/** The next batch of `spool`'s chain, sealed with the key the spool gives for it. */
function nextBatch(spool: Spool, tag = 'x'): SealedBatch {
  const head = spool.chainHead();
  const seq = head.seq + 1;
  return sealBatch(
    {
      host_id: 'h-1',
      boot_id: 'boot-1',
      seq,
      prev_hash: head.hash,
      records: [{ type: 'endpoint_close', t: 1_790_000_000_000_000 + seq, key: `${tag}${seq}` }],
    },
    key,
    spool.sealKeyFor(seq),
  );
}

/** Every leaf (sequence number) the head file's seal keys can still derive starts at `next`. */
function storedFrontier(dir: string) {
  const head = JSON.parse(readFileSync(join(dir, 'chain-head.json'), 'utf8')) as {
    seq: number;
    seal: unknown;
  };
  const f = decodeFrontier(head.seal);
  const firstLeaf = Math.min(...f.nodes.map((n) => n.index * 2 ** (SEAL_TREE_DEPTH - n.level)));
  return { head, next: f.next, firstLeaf };
}

describe('Spool sealing', () => {
  test('each append seals with the key of its seq and leaves on disk only the keys of later ones', () => {
    const dir = tempDir();
    const seed = newSealSeed();
    const spool = Spool.open(dir);
    assert.equal(spool.seals(), false);
    assert.equal(spool.sealKeyFor(1), null, 'a spool from before sealing gives no key');
    spool.startSealing(seed);
    assert.equal(spool.seals(), true);
    assert.equal(Spool.inspect(dir).seals, true);
    for (let i = 0; i < 5; i++) {
      const b = nextBatch(spool);
      spool.append(b);
      verifyBatchSeal(readBatchFrame(b.bytes), seed);
      const { head, next, firstLeaf } = storedFrontier(dir);
      assert.equal(head.seq, b.header.seq);
      assert.equal(next, b.header.seq + 1);
      assert.ok(firstLeaf > b.header.seq, 'the key of a spooled batch is on disk no more');
    }
    assert.throws(() => spool.sealKeyFor(3), { code: 'POFR_BATCH_SEAL' });
    // The file holds neither the seed nor any key the server uses for 1…5.
    const text = readFileSync(join(dir, 'chain-head.json'), 'utf8');
    assert.ok(!text.includes(seed.toString('hex')));
    for (let seq = 1; seq <= 5; seq++) assert.ok(!text.includes(deriveSealKey(seed, seq).toString('hex')));

    const reopened = Spool.open(dir);
    const b6 = nextBatch(reopened);
    reopened.append(b6);
    verifyBatchSeal(readBatchFrame(b6.bytes), seed);
    assert.throws(() => reopened.startSealing(newSealSeed()), { code: 'POFR_USAGE' });
  });

  test('a sealing spool refuses an unsealed batch; nothing moves', () => {
    const dir = tempDir();
    const spool = Spool.open(dir);
    spool.startSealing(newSealSeed());
    const unsealed = sealBatch(
      {
        host_id: 'h-1',
        boot_id: 'b',
        seq: 1,
        prev_hash: spool.chainHead().hash,
        records: [{ type: 'endpoint_close', t: 1, key: 'k' }],
      },
      key,
    );
    assert.throws(() => spool.append(unsealed), { code: 'POFR_BATCH_SEAL' });
    assert.equal(spool.depth(), 0);
    assert.equal(storedFrontier(dir).next, 1);
  });

  test('a crash between the batch file and the head: on open the head follows the batch and its key goes', () => {
    const dir = tempDir();
    const seed = newSealSeed();
    const spool = Spool.open(dir);
    spool.startSealing(seed);
    spool.append(nextBatch(spool));
    const b2 = nextBatch(spool);
    // What append() writes first, without the head that would follow.
    writeFileSync(join(dir, `${String(2).padStart(20, '0')}.pofrb`), b2.bytes);
    assert.equal(storedFrontier(dir).next, 2, 'before: the key of 2 is still on disk');
    const reopened = Spool.open(dir);
    assert.deepEqual(reopened.chainHead(), { seq: 2, hash: b2.hash });
    const { next, firstLeaf } = storedFrontier(dir);
    assert.equal(next, 3);
    assert.ok(firstLeaf >= 3);
    const b3 = nextBatch(reopened);
    reopened.append(b3);
    verifyBatchSeal(readBatchFrame(b3.bytes), seed);
  });

  test('a lost head loses the seal keys too, and says what follows', () => {
    const dir = tempDir();
    const spool = Spool.open(dir);
    spool.startSealing(newSealSeed());
    spool.append(nextBatch(spool));
    writeFileSync(join(dir, 'chain-head.json'), 'garbage');
    const reopened = Spool.open(dir);
    assert.equal(reopened.seals(), false);
    assert.ok(
      reopened.warnings().some((w) => /seal keys .* enroll it again/.test(w)),
      reopened.warnings().join('\n'),
    );
  });
});
