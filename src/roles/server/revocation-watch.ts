import type { Store } from '../../store/index.js';
import type { SshServer } from '../../transport/index.js';
import type { AuditTrail } from './audit-trail.js';
import type { Log } from './server-handlers.js';

/** How often a node looks whether a host it serves was revoked; a revocation takes effect within this. */
export const REVOCATION_POLL_MS = 500;
/** Host ids per query: a node with thousands of connected hosts asks in a few statements. */
const CHUNK = 500;

/**
 * Makes `pofr server revoke` immediate on every node: each node asks the store, every
 * REVOCATION_POLL_MS, for the status of the hosts it has connections of, and cuts those revoked or
 * removed — wherever the revocation was done (another node, the CLI on another machine). Asking
 * the shared store is what reaches every node of a PostgreSQL cluster; it costs one indexed query
 * per node and poll, whatever the number of connections.
 */
export function watchRevocations(
  store: Store,
  server: Pick<SshServer, 'connectedHosts' | 'disconnect'>,
  audit: AuditTrail,
  log: Log,
  pollMs = REVOCATION_POLL_MS,
): { stop(): void } {
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void check()
      .catch((e: unknown) => log('revocation check failed', { error: (e as Error).message }))
      .finally(() => {
        busy = false;
      });
  }, pollMs);
  timer.unref();

  async function check(): Promise<void> {
    const connected = server.connectedHosts();
    for (let i = 0; i < connected.length; i += CHUNK) {
      const ids = connected.slice(i, i + CHUNK);
      const rows = await store.db
        .selectFrom('hosts')
        .select(['host_id', 'status'])
        .where('host_id', 'in', ids)
        .execute();
      const status = new Map(rows.map((r) => [r.host_id, r.status]));
      for (const id of ids) {
        const s = status.get(id);
        if (s === 'approved') continue;
        const reason =
          s === undefined ? `host ${id} was removed: connection cut` : `host ${id} was ${s}: connection cut`;
        for (const c of server.disconnect(id, reason)) {
          log('revoked host cut off', { host: id, status: s ?? 'removed', remote: c.remote });
          audit.record({
            kind: 'revoked_cut',
            reason,
            hostId: id,
            remote: c.remote,
            fingerprint: c.fingerprint,
          });
        }
      }
    }
  }

  return { stop: () => clearInterval(timer) };
}
