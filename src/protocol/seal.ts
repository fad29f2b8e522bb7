import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { PofrError } from '../errors.js';

/**
 * Forward-secure sealing (docs/protocol.md "Sealing"). Every batch carries, besides its ed25519
 * signature, an HMAC-SHA256 under a key that belongs to its sequence number alone. The keys are the
 * leaves of a binary tree of depth 48 grown from a 32-byte seed: a node's children are HMACs of
 * the node, so a key derives what lies below it and nothing else. The client keeps only the
 * *frontier*: the fewest subtree roots whose leaves are the numbers not sealed yet. Sealing batch n
 * replaces the frontier with the one for n + 1, which cannot derive the key of n or of any number
 * before it. The server keeps the seed and derives any leaf in 48 steps.
 *
 * Written by hand: this is a few HMACs; no library offers a seekable forward-secure key chain.
 */
export const SEAL_SCHEME = 'fss1';
export const SEAL_TREE_DEPTH = 48;
export const SEAL_BYTES = 32;
/** The largest sequence number a seal key exists for. */
export const MAX_SEALED_SEQ = 2 ** SEAL_TREE_DEPTH - 1;

const LEFT = Buffer.from('pofr fss1 left', 'utf8');
const RIGHT = Buffer.from('pofr fss1 right', 'utf8');

/** One subtree root of the key tree: `level` 0 is the seed, SEAL_TREE_DEPTH the leaves. */
export interface SealNode {
  readonly level: number;
  readonly index: number;
  readonly key: Buffer;
}

/** What a client holds: keys for every sequence number from `next` on, and none below it. */
export interface SealFrontier {
  readonly next: number;
  /** Disjoint subtrees covering [next, 2^48), farthest first: the one holding `next` is last. */
  readonly nodes: readonly SealNode[];
}

/** A fresh random seed for an enrolling client. */
export function newSealSeed(): Buffer {
  return randomBytes(32);
}

function child(node: SealNode, right: boolean): SealNode {
  return {
    level: node.level + 1,
    index: node.index * 2 + (right ? 1 : 0),
    key: createHmac('sha256', node.key)
      .update(right ? RIGHT : LEFT)
      .digest(),
  };
}

/** First leaf (sequence number) below a node, and the first one past it. */
function span(node: SealNode): { from: number; to: number } {
  const width = 2 ** (SEAL_TREE_DEPTH - node.level);
  return { from: node.index * width, to: (node.index + 1) * width };
}

function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 1 || seq > MAX_SEALED_SEQ) {
    throw new PofrError('POFR_BATCH_SEAL', `sequence number ${seq} has no seal key (1 … ${MAX_SEALED_SEQ})`);
  }
}

/**
 * Walks from `from` down to leaf `seq`, keeping the right sibling of every left turn: those cover
 * what lies after `seq` under `from`. Returns the leaf and the siblings, deepest last.
 */
function descend(from: SealNode, seq: number, keepSiblings = true): { leaf: SealNode; siblings: SealNode[] } {
  const siblings: SealNode[] = [];
  let node = from;
  while (node.level < SEAL_TREE_DEPTH) {
    // Which way to turn needs only the node's place, not a key: one HMAC a level (two on a left
    // turn when the sibling is kept). The server checks every batch's seal: half the HMACs count.
    const width = 2 ** (SEAL_TREE_DEPTH - node.level - 1);
    if (seq < (node.index * 2 + 1) * width) {
      if (keepSiblings) siblings.push(child(node, true));
      node = child(node, false);
    } else {
      node = child(node, true);
    }
  }
  return { leaf: node, siblings };
}

/** The frontier a client starts from: keys for `next` (default 1) and every number after it. */
export function frontierFromSeed(seed: Buffer, next = 1): SealFrontier {
  checkSeed(seed);
  checkSeq(next);
  const { leaf, siblings } = descend({ level: 0, index: 0, key: seed }, next);
  // Farthest first, nearest last: siblings come shallow to deep, and the leaf `next` is nearest.
  return Object.freeze({ next, nodes: Object.freeze([...siblings, leaf]) });
}

/**
 * The seal key of `seq` and the frontier that remains once it is used (for seq + 1). Pure: the
 * caller decides when to replace its frontier (only once the sealed batch is durable) and then
 * erases the old one with eraseFrontier.
 */
export function sealKeyAt(frontier: SealFrontier, seq: number): { key: Buffer; rest: SealFrontier } {
  checkSeq(seq);
  if (seq < frontier.next) {
    throw new PofrError(
      'POFR_BATCH_SEAL',
      `the seal key of sequence number ${seq} was erased when ${frontier.next - 1} was sealed; seal with ${frontier.next} or later`,
    );
  }
  const nodes = [...frontier.nodes];
  // Subtrees entirely before `seq` are dropped: they hold keys of numbers skipped for good.
  while (nodes.length > 0 && span(nodes[nodes.length - 1]).to <= seq) nodes.pop();
  const holder = nodes.pop();
  if (!holder || span(holder).from > seq) {
    throw new PofrError(
      'POFR_BATCH_SEAL',
      `the seal frontier does not cover sequence number ${seq}: it is damaged`,
    );
  }
  const { leaf, siblings } = descend(holder, seq);
  nodes.push(...siblings);
  return { key: leaf.key, rest: Object.freeze({ next: seq + 1, nodes: Object.freeze(nodes) }) };
}

/** Seeds whose last derived path is kept (49 keys each, 1.5 kB: 1.5 MB in all). */
const PATH_CACHE_SEEDS = 1024;
/**
 * The path of the last key derived from each seed: level L's key at bytes [32 L, 32 L + 32). A
 * host's batches come in order, and the paths of n and n + 1 part only near the leaves, so the next
 * key takes a couple of HMACs instead of 48. It holds nothing the server does not already have:
 * every key on it derives from the seed the server keeps.
 */
const pathCache = new Map<string, { seq: number; keys: Buffer }>();

/** The server's side: the seal key of any sequence number, from the seed (at most 48 HMACs). */
export function deriveSealKey(seed: Buffer, seq: number): Buffer {
  checkSeed(seed);
  checkSeq(seq);
  const id = seed.toString('hex');
  let path = pathCache.get(id);
  // The deepest level whose node is on both paths: the node of level L above leaf n is n >> (48 - L).
  let level = 0;
  if (path === undefined) {
    path = { seq, keys: Buffer.alloc((SEAL_TREE_DEPTH + 1) * SEAL_BYTES) };
    seed.copy(path.keys, 0);
    if (pathCache.size >= PATH_CACHE_SEEDS) {
      const [oldest, gone] = pathCache.entries().next().value as [string, { keys: Buffer }];
      gone.keys.fill(0);
      pathCache.delete(oldest);
    }
  } else {
    pathCache.delete(id);
    level = SEAL_TREE_DEPTH;
    while (level > 0 && nodeAbove(path.seq, level) !== nodeAbove(seq, level)) level--;
  }
  pathCache.set(id, path);
  const { keys } = path;
  for (; level < SEAL_TREE_DEPTH; level++) {
    const right = nodeAbove(seq, level + 1) % 2 === 1;
    createHmac('sha256', keys.subarray(level * SEAL_BYTES, (level + 1) * SEAL_BYTES))
      .update(right ? RIGHT : LEFT)
      .digest()
      .copy(keys, (level + 1) * SEAL_BYTES);
  }
  path.seq = seq;
  return Buffer.from(keys.subarray(SEAL_TREE_DEPTH * SEAL_BYTES));
}

/** Index of the node of `level` on the path to leaf `seq` (exact: seq < 2^48). */
function nodeAbove(seq: number, level: number): number {
  return Math.floor(seq / 2 ** (SEAL_TREE_DEPTH - level));
}

/** Zeroes the keys of `old` that `kept` no longer holds (best effort: the GC may have copies). */
export function eraseFrontier(old: SealFrontier, kept: SealFrontier | null): void {
  const live = new Set(kept?.nodes.map((n) => n.key) ?? []);
  for (const n of old.nodes) if (!live.has(n.key)) n.key.fill(0);
}

/** The seal of a batch: HMAC-SHA256 of its signed bytes under the key of its sequence number. */
export function computeSeal(key: Buffer, signed: Uint8Array): Buffer {
  return createHmac('sha256', key).update(signed).digest();
}

/** Whether `seal` is the seal of `signed` for `seq` under `seed`, in constant time. */
export function sealMatches(seed: Buffer, seq: number, signed: Uint8Array, seal: Uint8Array): boolean {
  const expected = computeSeal(deriveSealKey(seed, seq), signed);
  return seal.length === expected.length && timingSafeEqual(expected, seal);
}

/**
 * The seed that must have sealed batch `seq` of a host that registered `seedHex` from `sealFrom`
 * on; null when none applies (a host from before sealing, or a batch it made before it upgraded).
 */
export function applicableSealSeed(
  seedHex: string | null,
  sealFrom: number | null,
  seq: number,
): Buffer | null {
  if (seedHex === null) return null;
  if (seq < Number(sealFrom ?? 1)) return null;
  return Buffer.from(seedHex, 'hex');
}

/** The frontier as it is stored in the client's state: `{"next":…,"nodes":[[level,index,"hex"],…]}`. */
export function encodeFrontier(f: SealFrontier): { next: number; nodes: [number, number, string][] } {
  return { next: f.next, nodes: f.nodes.map((n) => [n.level, n.index, n.key.toString('hex')]) };
}

export function decodeFrontier(raw: unknown): SealFrontier {
  const bad = (why: string) => new Error(`not a seal frontier: ${why}`);
  if (raw === null || typeof raw !== 'object' || !('next' in raw) || !('nodes' in raw)) throw bad('shape');
  const { next, nodes } = raw as { next: unknown; nodes: unknown };
  if (typeof next !== 'number' || !Number.isSafeInteger(next) || next < 1 || !Array.isArray(nodes)) {
    throw bad('next or nodes');
  }
  const out: SealNode[] = nodes.map((n: unknown) => {
    if (
      !Array.isArray(n) ||
      n.length !== 3 ||
      !Number.isSafeInteger(n[0]) ||
      n[0] < 0 ||
      n[0] > SEAL_TREE_DEPTH ||
      !Number.isSafeInteger(n[1]) ||
      typeof n[2] !== 'string' ||
      !/^[0-9a-f]{64}$/.test(n[2])
    ) {
      throw bad('node');
    }
    return { level: n[0], index: n[1], key: Buffer.from(n[2], 'hex') };
  });
  return Object.freeze({ next, nodes: Object.freeze(out) });
}

function checkSeed(seed: Buffer): void {
  if (seed.length !== 32)
    throw new PofrError('POFR_BATCH_SEAL', `a seal seed is 32 bytes, not ${seed.length}`);
}
