/** Where and when to look; every analyst query takes these. Times are µs since the epoch, UTC. */
export interface WindowOptions {
  /** Host ids (see resolveHosts); undefined: every host; empty: none. */
  readonly hosts?: readonly string[];
  /** Inclusive lower bound; undefined: from the beginning of the record. */
  readonly from?: number;
  /** Inclusive upper bound; undefined: up to the end of the record. */
  readonly to?: number;
  /** At most this many rows (default DEFAULT_LIMIT). */
  readonly limit?: number;
}

/** Keeps an unbounded question from loading a whole store into memory. */
export const DEFAULT_LIMIT = 10_000;

export function limitOf(opts: WindowOptions): number {
  const limit = opts.limit ?? DEFAULT_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`limit must be a positive integer, got ${limit}`);
  }
  return limit;
}

/** Exact bytes for JSON: base64, or null when the display string is already exact. */
export function toBase64(raw: Uint8Array | null | undefined): string | null {
  if (raw === null || raw === undefined) return null;
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
}

/** `argv` is stored as a JSON array of display strings. */
export function parseArgv(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.map((x) => String(x)) : [];
  } catch {
    return [];
  }
}
