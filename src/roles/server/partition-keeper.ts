import { ensurePartitions, type Store, WEEK_US, WEEKS_AHEAD } from '../../store/index.js';

/** How often the server makes the coming weeks' partitions: well within the two weeks ahead. */
const EVERY_MS = 3_600_000;

export interface PartitionKeeper {
  stop(): void;
}

/**
 * PostgreSQL: makes this week's partitions and WEEKS_AHEAD weeks more before the server listens, then
 * again every hour (src/store/partitions.ts), so batches land in weeks made ahead of time and a week
 * change never waits on DDL. Several nodes may do it at once: creation is idempotent and serialised.
 * SQLite: nothing to do.
 */
export async function startPartitionKeeper(
  store: Store,
  log: (msg: string, fields?: object) => void,
): Promise<PartitionKeeper> {
  if (!store.caps.timePartitions) return { stop() {} };
  const ahead = () => {
    const now = Date.now() * 1000;
    return ensurePartitions(store.db, now, now + WEEKS_AHEAD * WEEK_US, now);
  };
  await ahead();
  const timer = setInterval(() => {
    ahead().catch((e: Error) => log('could not make the coming weeks’ partitions', { error: e.message }));
  }, EVERY_MS);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
