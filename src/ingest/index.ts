export { type ChainLink, type IngestContext, type IngestResult, ingestBatch } from './apply-batch.js';
export { type VerifyFailure, type VerifyReport, verifyStore } from './verify-store.js';
