export { type Capabilities, postgresCapabilities, sqliteCapabilities } from './capabilities.js';
export { createMigrator, migrateToLatest } from './migrate.js';
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
