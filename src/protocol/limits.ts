/** Size limits of protocol v1: a peer that exceeds one is refused before anything is parsed. */
export const LIMITS = {
  /** A whole framed batch on the wire. */
  maxBatchBytes: 32 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  /** The payload once decompressed: bounds memory against a compression bomb. */
  maxPayloadBytes: 256 * 1024 * 1024,
  // Below 1,000,000 so `seq × 1,000,000 + index` (the store's exact order) never collides.
  maxRecords: 1_000_000,
} as const;
