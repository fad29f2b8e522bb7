export {
  type ChainHead,
  DEFAULT_SPOOL_MAX_BYTES,
  Spool,
  type SpooledBatch,
  type SpoolOptions,
  type SpoolSummary,
} from './spool.js';
