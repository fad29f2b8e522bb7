export {
  CrashJournal,
  DEFAULT_JOURNAL_MAX_BYTES,
  DEFAULT_JOURNAL_SYNC_MS,
  type JournalContents,
  type JournalHeader,
  type JournalLoss,
  type JournalOptions,
  type JournalStatus,
  parseJournal,
} from './journal.js';
export {
  type ChainHead,
  DEFAULT_SPOOL_MAX_BYTES,
  Spool,
  type SpooledBatch,
  type SpoolOptions,
  type SpoolSummary,
} from './spool.js';
