import { PofrError } from '../errors.js';
import type { Store } from '../store/index.js';

/** One monitored host as `pofr hosts` shows it. */
export interface HostRow {
  readonly host_id: string;
  readonly name: string;
  /** pending | approved | revoked */
  readonly status: string;
  readonly os: string | null;
  readonly kernel: string | null;
  readonly timezone: string | null;
  readonly first_seen: number | null;
  readonly last_seen: number | null;
  readonly last_batch_at: number | null;
  readonly last_seq: number | null;
}

/** Every enrolled host, by name then id. */
export async function listHosts(store: Store): Promise<readonly HostRow[]> {
  const rows = await store.db
    .selectFrom('hosts')
    .select([
      'host_id',
      'name',
      'status',
      'os',
      'kernel',
      'timezone',
      'first_seen',
      'last_seen',
      'last_batch_at',
      'last_seq',
    ])
    .orderBy('name')
    .orderBy('host_id')
    .execute();
  return Object.freeze(rows.map((r) => Object.freeze({ ...r })));
}

/**
 * The host ids a `--host` argument names: the host with that exact id, or every host with that
 * exact name (names are not unique). Without an argument, every host.
 */
export async function resolveHosts(store: Store, nameOrId?: string): Promise<string[]> {
  let q = store.db.selectFrom('hosts').select('host_id').orderBy('host_id');
  if (nameOrId !== undefined)
    q = q.where((eb) => eb.or([eb('host_id', '=', nameOrId), eb('name', '=', nameOrId)]));
  const rows = await q.execute();
  if (nameOrId !== undefined && rows.length === 0) {
    throw new PofrError(
      'POFR_HOST_UNKNOWN',
      `no host named or with id "${nameOrId}"; list hosts with: pofr hosts`,
    );
  }
  const byId = rows.find((r) => r.host_id === nameOrId);
  return byId ? [byId.host_id] : rows.map((r) => r.host_id);
}
