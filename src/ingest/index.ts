export { type ChainLink, type IngestContext, type IngestResult, ingestBatch } from './apply-batch.js';
export {
  type RederiveMismatch,
  type RederiveOptions,
  type RederiveResult,
  rederiveHost,
} from './rederive.js';
export { type BatchVerdict, verifyBatch } from './verify-batch.js';
export {
  type KnownGap,
  type VerifyFailure,
  type VerifyOptions,
  type VerifyReport,
  verifyStore,
} from './verify-store.js';
