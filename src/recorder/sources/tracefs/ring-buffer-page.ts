/**
 * Decoder of the kernel's ring-buffer sub-buffers as `per_cpu/cpuN/trace_pipe_raw` hands them out.
 * Written here because no maintained JavaScript library reads them (libtraceevent's kbuffer is C);
 * the layout is stable ABI, described by `events/header_page` and `events/header_event`:
 *
 *   sub-buffer: u64 timestamp | u64 commit (data bytes, bit 31 "events were lost before this
 *               page", bit 30 "the count is stored after the data") | data…
 *   event:      u32 type_len:5 time_delta:27 | payload
 *     type_len 1..28  payload of type_len × 4 bytes
 *     type_len 0      u32 length (itself included) then the payload
 *     29 padding      u32 length of the skipped bytes; time_delta 0 = rest of page is empty
 *     30 time extend  u32: delta bits 27..58 (no event of its own)
 *     31 time stamp   u32: absolute time bits 27..58; the top 5 bits come from the page time
 *
 * The binary form is used rather than trace_pipe's text because text cannot carry file names and
 * arguments exactly (newlines, quotes and invalid UTF-8 print as they are, ambiguously).
 */

const COMMIT_MASK = (1 << 27) - 1;
const MISSING_EVENTS = 0x8000_0000;
const MISSING_STORED = 0x4000_0000;
const TYPE_PADDING = 29;
const TYPE_TIME_EXTEND = 30;
const TYPE_TIME_STAMP = 31;
const TS_MSB = 0xf8n << 56n;
const PAGE_HEADER = 16;

export interface PageInfo {
  /** Timestamp of the sub-buffer, in trace-clock nanoseconds. */
  readonly timestamp: number;
  /** Events the kernel lost between the previous sub-buffer and this one: 0, a count, or -1 (unknown). */
  readonly lostBefore: number;
}

/**
 * Calls `visit(ts, offset, length)` for each data record of one sub-buffer, in order, where `ts` is
 * the record's time in trace-clock nanoseconds and `offset`/`length` locate its payload in `page`
 * (the payload starts with the common fields: u16 common_type, …). A truncated or corrupt page ends
 * the walk early rather than reading past its bytes.
 */
export function readSubbuffer(
  page: Buffer,
  pageLength: number,
  visit: (ts: number, offset: number, length: number) => void,
): PageInfo {
  if (pageLength < PAGE_HEADER) return { timestamp: 0, lostBefore: 0 };
  const base = page.readBigUInt64LE(0);
  const commit = Number(page.readBigUInt64LE(8) & 0xffff_ffffn);
  const size = commit & COMMIT_MASK;
  const dataEnd = Math.min(PAGE_HEADER + size, pageLength);
  let lostBefore = 0;
  if ((commit & MISSING_EVENTS) !== 0) {
    lostBefore =
      (commit & MISSING_STORED) !== 0 && dataEnd + 8 <= pageLength
        ? Number(page.readBigUInt64LE(dataEnd))
        : -1;
  }
  // A double holds trace-clock nanoseconds exactly for 104 days of uptime and to a few ns after:
  // far finer than the microseconds records carry, and no BigInt per event.
  let ts = Number(base);
  let at = PAGE_HEADER;
  while (at + 4 <= dataEnd) {
    const word = page.readUInt32LE(at);
    const typeLen = word & 0x1f;
    const delta = word >>> 5;
    if (typeLen === TYPE_PADDING) {
      if (delta === 0 || at + 8 > dataEnd) break;
      at += 4 + page.readUInt32LE(at + 4);
      continue;
    }
    if (typeLen === TYPE_TIME_EXTEND || typeLen === TYPE_TIME_STAMP) {
      if (at + 8 > dataEnd) break;
      const value = page.readUInt32LE(at + 4) * 2 ** 27 + delta;
      ts = typeLen === TYPE_TIME_STAMP ? Number(BigInt(value) | (BigInt(ts) & TS_MSB)) : ts + value;
      at += 8;
      continue;
    }
    let payload: number;
    let length: number;
    if (typeLen === 0) {
      if (at + 8 > dataEnd) break;
      length = page.readUInt32LE(at + 4) - 4;
      payload = at + 8;
      at = payload + ((length + 3) & ~3);
    } else {
      length = typeLen * 4;
      payload = at + 4;
      at = payload + length;
    }
    if (length <= 0 || payload + length > dataEnd) break;
    ts += delta;
    visit(ts, payload, length);
  }
  return { timestamp: Number(base), lostBefore };
}
