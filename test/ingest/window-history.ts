import assert from 'node:assert/strict';
import { ingestBatch } from '../../src/ingest/index.js';
import type { PofrRecord, SealedBatch } from '../../src/protocol/index.js';
import type { Store } from '../../src/store/index.js';
import { addHost, endpoint, file, inventory, proc, T0, type TestHost } from './host-fixture.js';

export const S = 1_000_000;
export const DAY = 86_400 * S;

export async function apply(store: Store, host: TestHost, batch: SealedBatch) {
  const r = await ingestBatch(store, batch.bytes, { principal: host.hostId, receivedAt: batch.header.t_to });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
}

export async function count(
  store: Store,
  table: 'processes' | 'file_opens' | 'endpoints' | 'endpoint_states',
) {
  const r = await store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Two old batches (day 0) and two recent ones (day 10). bash (pid 100) and its TCP socket live
 * across the cut; pid 200 and pid 250 live and die on day 0, with their files and a UDP socket;
 * bash's log file opens on day 0 and closes on day 10. `day0`: more records for the first batch.
 */
export async function history(store: Store, day0: PofrRecord[] = []): Promise<TestHost> {
  const host = await addHost(store, { name: 'web1' });
  const bash = proc(100, 5, { comm: 'bash', argv: ['bash'], ruid: 1000 });
  await apply(
    store,
    host,
    host.next([
      inventory(T0),
      { type: 'process_start', t: T0 + S, proc: bash },
      { type: 'process_start', t: T0 + S, proc: proc(200, 7, { ppid: 100, parent_start_ticks: 5 }) },
      { type: 'process_start', t: T0 + S, proc: proc(250, 9, { ppid: 100 }) },
      { type: 'file_open', t: T0 + S, file: file(200, 7, 3, '/tmp/a') },
      {
        type: 'endpoint_open',
        t: T0 + S,
        endpoint: endpoint('tcp:a', { pid: 100, start_ticks: 5, state: 'SYN_SENT' }),
      },
      {
        type: 'endpoint_open',
        t: T0 + S,
        endpoint: endpoint('udp:x', { proto: 'udp', pid: 200, start_ticks: 7, state: 'UNCONN', inode: 7 }),
      },
      { type: 'endpoint_close', t: T0 + 2 * S, key: 'udp:x' },
      { type: 'process_exit', t: T0 + 2 * S, pid: 250, start_ticks: 9 },
      ...day0,
    ]),
  );
  await apply(
    store,
    host,
    host.next([
      { type: 'process_exit', t: T0 + 3 * S, pid: 200, start_ticks: 7 },
      { type: 'file_open', t: T0 + 3 * S, file: file(100, 5, 3, '/var/log/bash.log') },
      { type: 'endpoint_state', t: T0 + 3 * S, key: 'tcp:a', state: 'ESTABLISHED' },
    ]),
  );
  await apply(
    store,
    host,
    host.next([
      {
        type: 'process_start',
        t: T0 + 10 * DAY,
        proc: proc(300, 9_000, { ppid: 100, start: T0 + 10 * DAY }),
      },
      { type: 'file_close', t: T0 + 10 * DAY, pid: 100, start_ticks: 5, fd: 3 },
      { type: 'endpoint_state', t: T0 + 10 * DAY, key: 'tcp:a', state: 'CLOSE_WAIT' },
    ]),
  );
  await apply(
    store,
    host,
    host.next([
      inventory(T0 + 10 * DAY + S, {
        users: [{ uid: 1000, gid: 1000, name: 'alice', home: '/home/alice', shell: '/bin/zsh' }],
      }),
      { type: 'endpoint_close', t: T0 + 10 * DAY + 2 * S, key: 'tcp:a' },
      { type: 'process_exit', t: T0 + 10 * DAY + 2 * S, pid: 100, start_ticks: 5 },
    ]),
  );
  return host;
}
