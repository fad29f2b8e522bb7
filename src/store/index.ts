export {
  type Capabilities,
  type CursorStatements,
  postgresCapabilities,
  type RegexStandIn,
  sqliteCapabilities,
} from './capabilities.js';
export { type FixedQuery, fixedQuery } from './fixed-query.js';
export {
  LIFETIME_BOUNDS_US,
  LIFETIME_LONGEST,
  LIFETIME_RUNNING,
  lifetimeClassSql,
} from './lifetime-class.js';
export { createMigrator, migrateToLatest } from './migrate.js';
export {
  ensurePartitions,
  forgetPartitions,
  listPartitions,
  PARTITIONED,
  type PartitionedTable,
  type PartitionInfo,
  partitionName,
  WEEK_US,
  WEEKS_AHEAD,
  weekStart,
} from './partitions.js';
export { areStandIn } from './posix-regex.js';
export { IdPool, type LinkedTable, reserveIds } from './reserve-ids.js';
export type * from './schema.js';
export {
  initStoreConfig,
  isPostgresUrl,
  openStore,
  readConfiguredRules,
  readStoreConfig,
  type Store,
  type StoreConfig,
  writeConfiguredRules,
} from './store.js';
