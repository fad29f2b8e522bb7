import type { Store } from '../../src/store/index.js';

/** Rows inserted straight into the store, with defaults for what a test does not care about. */

export async function addHost(
  store: Store,
  host_id: string,
  name: string,
  extra: Record<string, unknown> = {},
) {
  await store.db
    .insertInto('hosts')
    .values({
      host_id,
      name,
      status: 'approved',
      ssh_key: `key-${host_id}`,
      ssh_fingerprint: `SHA256:${host_id}`,
      signing_key: `sign-${host_id}`,
      enrolled_at: 1,
      os: 'Debian 13',
      kernel: '6.12.0',
      timezone: 'Europe/Berlin',
      first_seen: 1_000,
      last_seen: 9_000,
      ...extra,
    })
    .execute();
}

export interface ProcessFields {
  host_id?: string;
  boot_id?: string;
  pid: number;
  ppid?: number;
  start: number;
  end?: number | null;
  end_reason?: string | null;
  exec_index?: number;
  start_ticks?: number;
  parent_id?: number | null;
  argv?: string[];
  argv_raw?: Uint8Array | null;
  exe?: string | null;
  comm?: string;
  cwd?: string | null;
  ruid?: number;
  euid?: number;
  user?: string | null;
  observer?: boolean;
  source?: string;
  open_ord?: number;
  close_ord?: number | null;
}

let ordCounter = 0;
function nextOrd(): number {
  ordCounter += 1;
  return ordCounter;
}

/** Inserts one process image; returns its row id. */
export async function addProcess(store: Store, f: ProcessFields): Promise<number> {
  const argv = f.argv ?? [f.comm ?? `p${f.pid}`];
  const row = await store.db
    .insertInto('processes')
    .values({
      host_id: f.host_id ?? 'h1',
      boot_id: f.boot_id ?? 'boot-1',
      pid: f.pid,
      start_ticks: f.start_ticks ?? f.pid * 10,
      exec_index: f.exec_index ?? 0,
      start: f.start,
      end: f.end ?? null,
      end_reason: f.end_reason ?? (f.end === undefined || f.end === null ? null : 'exit'),
      ppid: f.ppid ?? 1,
      parent_id: f.parent_id ?? null,
      exe: f.exe === undefined ? `/usr/bin/${f.comm ?? `p${f.pid}`}` : f.exe,
      exe_raw: null,
      comm: f.comm ?? `p${f.pid}`,
      comm_raw: null,
      argv: JSON.stringify(argv),
      argv_raw: f.argv_raw ?? null,
      cmdline: argv.join(' '),
      cwd: f.cwd === undefined ? '/root' : f.cwd,
      cwd_raw: null,
      ruid: f.ruid ?? 0,
      euid: f.euid ?? f.ruid ?? 0,
      rgid: 0,
      egid: 0,
      user: f.user === undefined ? 'root' : f.user,
      source: f.source ?? 'trace',
      observer: f.observer ? 1 : 0,
      open_ord: f.open_ord ?? nextOrd(),
      close_ord: f.close_ord ?? null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return Number(row.id);
}

export interface FileFields {
  host_id?: string;
  process_id: number;
  pid: number;
  fd?: number;
  path: string;
  path_raw?: Uint8Array | null;
  kind?: string;
  first_seen: number;
  last_seen?: number;
  open?: boolean;
  open_ord?: number;
  close_ord?: number | null;
}

export async function addFile(store: Store, f: FileFields): Promise<number> {
  const open = f.open ?? false;
  const row = await store.db
    .insertInto('file_opens')
    .values({
      host_id: f.host_id ?? 'h1',
      process_id: f.process_id,
      pid: f.pid,
      fd: f.fd ?? 3,
      path: f.path,
      path_raw: f.path_raw ?? null,
      kind: f.kind ?? 'file',
      first_seen: f.first_seen,
      last_seen: f.last_seen ?? f.first_seen,
      is_open: open ? 1 : 0,
      open_ord: f.open_ord ?? nextOrd(),
      close_ord: open ? null : (f.close_ord ?? nextOrd()),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return Number(row.id);
}

export interface EndpointFields {
  host_id?: string;
  process_id?: number | null;
  pid?: number | null;
  proto?: string;
  family?: number;
  local_ip?: string;
  local_port?: number;
  remote_ip?: string;
  remote_port?: number;
  state?: string;
  first_seen: number;
  last_seen?: number;
  open?: boolean;
  country?: string | null;
  fqdn?: string | null;
  open_ord?: number;
  close_ord?: number | null;
}

export async function addEndpoint(store: Store, f: EndpointFields): Promise<number> {
  const open = f.open ?? false;
  const row = await store.db
    .insertInto('endpoints')
    .values({
      host_id: f.host_id ?? 'h1',
      boot_id: 'boot-1',
      key: `k${nextOrd()}`,
      process_id: f.process_id ?? null,
      pid: f.pid ?? null,
      proto: f.proto ?? 'tcp',
      family: f.family ?? 4,
      local_ip: f.local_ip ?? '10.0.0.1',
      local_port: f.local_port ?? 40000,
      remote_ip: f.remote_ip ?? '203.0.113.7',
      remote_port: f.remote_port ?? 443,
      state: f.state ?? 'ESTABLISHED',
      inode: 1234,
      first_seen: f.first_seen,
      last_seen: f.last_seen ?? f.first_seen,
      is_open: open ? 1 : 0,
      country: f.country ?? null,
      city: null,
      fqdn: f.fqdn ?? null,
      open_ord: f.open_ord ?? nextOrd(),
      close_ord: open ? null : (f.close_ord ?? nextOrd()),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return Number(row.id);
}

export async function addEndpointState(
  store: Store,
  f: { endpoint_id: number; host_id?: string; t: number; state: string; ord: number },
): Promise<void> {
  await store.db
    .insertInto('endpoint_states')
    .values({ endpoint_id: f.endpoint_id, host_id: f.host_id ?? 'h1', t: f.t, state: f.state, ord: f.ord })
    .execute();
}

export async function addGap(
  store: Store,
  f: {
    host_id?: string;
    kind: string;
    seq: number;
    t_from: number | null;
    t_to: number | null;
    detail: string;
    at?: number;
  },
): Promise<void> {
  await store.db
    .insertInto('gaps')
    .values({
      host_id: f.host_id ?? 'h1',
      kind: f.kind,
      seq: f.seq,
      t_from: f.t_from,
      t_to: f.t_to,
      detail: f.detail,
      at: f.at ?? 99_999,
    })
    .execute();
}
