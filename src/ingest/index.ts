export { type ChainLink, type IngestContext, type IngestResult, ingestBatch } from './apply-batch.js';
export { type BatchIngestor, type CommitGroupOptions, createBatchIngestor } from './commit-group.js';
export { type ExportFormat, type ExportManifest, type ExportOptions, exportWindow } from './export-window.js';
export { findKnownGaps, KNOWN_GAP_KINDS, type KnownGap, RECORDED_GAP_KINDS } from './known-gaps.js';
export { type PruneOptions, type PruneReport, pruneStore } from './prune-store.js';
export {
  type RederiveMismatch,
  type RederiveOptions,
  type RederiveResult,
  rederiveHost,
} from './rederive.js';
export { type BatchVerdict, verifyBatch } from './verify-batch.js';
export {
  type VerifyFailure,
  type VerifyOptions,
  type VerifyReport,
  verifyStore,
} from './verify-store.js';
