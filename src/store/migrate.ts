import { type Kysely, type MigrationResultSet, Migrator } from 'kysely';
import { PofrError } from '../errors.js';
import type { Capabilities } from './capabilities.js';
import { initialMigration } from './migrations/0001-initial.js';
import { openIntervalIndexesMigration } from './migrations/0002-open-interval-indexes.js';
import { serverSettingsMigration } from './migrations/0003-server-settings.js';
import { endpointNetnsMigration } from './migrations/0004-endpoint-netns.js';
import { argvSourceMigration } from './migrations/0005-argv-source.js';
import { hostClientVersionMigration } from './migrations/0006-host-client-version.js';
import { recorderEventsMigration } from './migrations/0007-recorder-events.js';
import { auditAndSealsMigration } from './migrations/0008-audit-and-seals.js';
import { analystIndexesMigration } from './migrations/0009-analyst-indexes.js';
import { processContextMigration } from './migrations/0010-process-context.js';
import { prunesMigration } from './migrations/0012-prunes.js';
import { idBlocksMigration } from './migrations/0013-id-blocks-prune-digest.js';
import { alertEvidenceMigration } from './migrations/0014-alert-evidence.js';
import { timePartitionsMigration } from './migrations/0015-time-partitions.js';
import { searchAndTreeIndexesMigration } from './migrations/0016-search-and-tree-indexes.js';
import { boundedIndexKeysMigration } from './migrations/0017-bounded-index-keys.js';
import { processTimeIndexesMigration } from './migrations/0018-process-time-indexes.js';
import { trigramDoclistsMigration } from './migrations/0020-trigram-doclists.js';
import { redundantIngestIndexesMigration } from './migrations/0021-redundant-ingest-indexes.js';
import type { Database } from './schema.js';

/** Migrations live in code (no directory scan), so a bundled or packed pofr still finds them. */
export function createMigrator(db: Kysely<Database>, caps: Capabilities): Migrator {
  return new Migrator({
    db,
    provider: {
      async getMigrations() {
        return {
          '0001-initial': initialMigration(caps),
          '0002-open-interval-indexes': openIntervalIndexesMigration(),
          '0003-server-settings': serverSettingsMigration(),
          '0004-endpoint-netns': endpointNetnsMigration(),
          '0005-argv-source': argvSourceMigration(),
          '0006-host-client-version': hostClientVersionMigration(),
          '0007-recorder-events': recorderEventsMigration(caps),
          '0008-audit-and-seals': auditAndSealsMigration(caps),
          '0009-analyst-indexes': analystIndexesMigration(),
          '0010-process-context': processContextMigration(caps),
          '0012-prunes': prunesMigration(caps),
          '0013-id-blocks-prune-digest': idBlocksMigration(caps),
          '0014-alert-evidence': alertEvidenceMigration(),
          '0015-time-partitions': timePartitionsMigration(caps),
          '0016-search-and-tree-indexes': searchAndTreeIndexesMigration(caps),
          '0017-bounded-index-keys': boundedIndexKeysMigration(caps),
          '0018-process-time-indexes': processTimeIndexesMigration(),
          '0020-trigram-doclists': trigramDoclistsMigration(caps),
          '0021-redundant-ingest-indexes': redundantIngestIndexesMigration(),
        };
      },
    },
  });
}

/** Brings the schema to the latest version; the result lists what ran. */
export async function migrateToLatest(db: Kysely<Database>, caps: Capabilities): Promise<MigrationResultSet> {
  const result = await createMigrator(db, caps).migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new PofrError(
      'POFR_STORE_MIGRATION',
      `schema migration ${failed} failed on ${caps.engine}: ${(result.error as Error).message ?? String(result.error)}`,
    );
  }
  return result;
}
