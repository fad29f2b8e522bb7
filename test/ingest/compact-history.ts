import assert from 'node:assert/strict';
import { ingestBatch } from '../../src/ingest/index.js';
import type { PofrRecord, ProcessImage } from '../../src/protocol/index.js';
import { execDeltaImage, forkedImage } from '../../src/recorder/live-state.js';
import type { Store } from '../../src/store/index.js';
import type { TestHost } from './host-fixture.js';

/**
 * What the tests of the compact process records (process_fork, protocol 3; process_exec_delta,
 * protocol 4) share: they send a history both ways and compare the stored rows.
 */

/** Ingests one batch of the host's, which must be accepted; returns its warnings. */
export async function send(store: Store, host: TestHost, records: PofrRecord[]): Promise<string[]> {
  const r = await ingestBatch(store, host.next(records).bytes, { principal: host.hostId });
  assert.equal(r.status, 'accepted', JSON.stringify(r));
  return r.status === 'accepted' ? r.warnings : [];
}

/** The same history with every compact record stated whole: what a protocol 2 recorder sent. */
export function stated(batches: PofrRecord[][]): PofrRecord[][] {
  const images = new Map<string, ProcessImage>();
  const key = (pid: number, st: number) => `${pid}:${st}`;
  return batches.map((records) =>
    records.map((r): PofrRecord => {
      if (r.type === 'process_start' || r.type === 'process_exec') {
        images.set(key(r.proc.pid, r.proc.start_ticks), r.proc);
        return r;
      }
      if (r.type === 'process_fork') {
        const parent = images.get(key(r.ppid, r.parent_start_ticks));
        assert.ok(parent, 'the fixture forks known parents only');
        const img = forkedImage(parent, r);
        images.set(key(r.pid, r.start_ticks), img);
        return { type: 'process_start', t: r.t, proc: img };
      }
      if (r.type === 'process_exec_delta') {
        const before = images.get(key(r.pid, r.start_ticks));
        assert.ok(before, 'the fixture execs known processes only');
        const img = execDeltaImage(before, r);
        images.set(key(r.pid, r.start_ticks), img);
        return { type: 'process_exec', t: r.t, proc: img };
      }
      return r;
    }),
  );
}

/** The host's process rows, comparable across stores: ids replaced by pid/exec_index, bytes as hex. */
export async function rowsOf(store: Store, hostId: string) {
  const rows = await store.db
    .selectFrom('processes')
    .selectAll()
    .where('host_id', '=', hostId)
    .orderBy('pid')
    .orderBy('exec_index')
    .execute();
  const idToPid = new Map(rows.map((r) => [Number(r.id), `${r.pid}/${r.exec_index}`]));
  const hex = (b: unknown) => (b === null ? null : Buffer.from(b as Uint8Array).toString('hex'));
  return rows.map(({ id: _id, host_id: _h, boot_id: _b, parent_id, ...rest }) => ({
    ...rest,
    parent: parent_id === null ? null : idToPid.get(Number(parent_id)),
    exe_raw: hex(rest.exe_raw),
    argv_raw: hex(rest.argv_raw),
    comm_raw: hex(rest.comm_raw),
    cwd_raw: hex(rest.cwd_raw),
    cgroup_raw: hex(rest.cgroup_raw),
  }));
}
