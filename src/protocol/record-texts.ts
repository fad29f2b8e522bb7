import type { PofrRecord } from './records.js';

/**
 * Records as the JSON Lines a batch payload holds, with what sealing and loss accounting need to
 * know of them, so that a recorder can keep its unsealed records as text alone. A record is
 * serialised once, in the cycle it is made (the crash journal writes the same text), and the record
 * objects can then die young: held for the seconds until their batch is sealed, thousands of them a
 * second under an exec storm were promoted to V8's old generation and marked again by every major
 * GC, most of the recorder's garbage collection (bench/exec-capture). The text is kept as its
 * UTF-8 bytes, one buffer per cycle: outside V8's heap, nothing to a collector, and what the
 * journal writes and the batch compresses without another encoding.
 *
 * JSON text never holds a raw newline (JSON.stringify escapes it inside strings), and in UTF-8 the
 * byte 0x0a is only ever a newline, so `jsonl` splits back into its records exactly at 0x0a.
 */
export interface RecordTexts {
  /** The records' JSON as UTF-8, one per line, no trailing newline; empty for none. */
  readonly jsonl: Buffer;
  readonly count: number;
  /** Smallest and largest `t` of the records (a batch header's t_from and t_to). */
  readonly tFrom: number;
  readonly tTo: number;
  /** What losing these records would lose: a gap record counts its own window and `dropped`. */
  readonly lossFrom: number;
  readonly lossTo: number;
  readonly dropped: number;
}

const NEWLINE = Buffer.from('\n');

export const NO_TEXTS: RecordTexts = Object.freeze({
  jsonl: Buffer.alloc(0),
  count: 0,
  tFrom: Number.MAX_SAFE_INTEGER,
  tTo: 0,
  lossFrom: Number.MAX_SAFE_INTEGER,
  lossTo: 0,
  dropped: 0,
});

/** Serialises records once, as batch and journal both carry them. */
export function textsOf(records: readonly PofrRecord[]): RecordTexts {
  if (records.length === 0) return NO_TEXTS;
  const lines = new Array<string>(records.length);
  let tFrom = Number.MAX_SAFE_INTEGER;
  let tTo = 0;
  let lossFrom = Number.MAX_SAFE_INTEGER;
  let lossTo = 0;
  let dropped = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    lines[i] = JSON.stringify(r);
    if (r.t < tFrom) tFrom = r.t;
    if (r.t > tTo) tTo = r.t;
    const from = r.type === 'gap' ? r.from : r.t;
    const to = r.type === 'gap' ? r.to : r.t;
    if (from < lossFrom) lossFrom = from;
    if (to > lossTo) lossTo = to;
    dropped += r.type === 'gap' ? (r.dropped ?? 0) : 1;
  }
  const jsonl = Buffer.from(lines.join('\n'), 'utf8');
  return { jsonl, count: records.length, tFrom, tTo, lossFrom, lossTo, dropped };
}

/** Several runs of records as one, in order. */
export function joinTexts(parts: readonly RecordTexts[]): RecordTexts {
  const nonEmpty = parts.filter((p) => p.count > 0);
  if (nonEmpty.length === 0) return NO_TEXTS;
  if (nonEmpty.length === 1) return nonEmpty[0];
  let count = 0;
  let tFrom = Number.MAX_SAFE_INTEGER;
  let tTo = 0;
  let lossFrom = Number.MAX_SAFE_INTEGER;
  let lossTo = 0;
  let dropped = 0;
  for (const p of nonEmpty) {
    count += p.count;
    tFrom = Math.min(tFrom, p.tFrom);
    tTo = Math.max(tTo, p.tTo);
    lossFrom = Math.min(lossFrom, p.lossFrom);
    lossTo = Math.max(lossTo, p.lossTo);
    dropped += p.dropped;
  }
  const pieces: Buffer[] = [];
  for (const p of nonEmpty) {
    if (pieces.length > 0) pieces.push(NEWLINE);
    pieces.push(p.jsonl);
  }
  return { jsonl: Buffer.concat(pieces), count, tFrom, tTo, lossFrom, lossTo, dropped };
}

/**
 * Two halves of a run (the first has `count >> 1` records). Each half's times are read back from
 * its records' JSON: only a batch over the size limits is split, which is rare enough for that.
 */
export function splitTexts(texts: RecordTexts): [RecordTexts, RecordTexts] {
  const lines = texts.jsonl.toString('utf8').split('\n');
  const mid = lines.length >> 1;
  return [linesTexts(lines.slice(0, mid)), linesTexts(lines.slice(mid))];
}

function linesTexts(lines: readonly string[]): RecordTexts {
  if (lines.length === 0) return NO_TEXTS;
  const summary = textsOf(lines.map((l) => JSON.parse(l) as PofrRecord));
  // The text is kept as it was made, not re-serialised from the parsed copy.
  return { ...summary, jsonl: Buffer.from(lines.join('\n'), 'utf8') };
}
