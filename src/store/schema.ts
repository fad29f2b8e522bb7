import type { ColumnType, Generated } from 'kysely';

/**
 * Row types of the store (docs/schema.md). Times are integer microseconds since the Unix epoch,
 * UTC. Kernel strings are kept twice when they are not valid UTF-8: a readable `x` (invalid bytes
 * as \xNN) for search and display, and the exact bytes in `x_raw` (NULL when `x` is exact).
 * Booleans are integers 0/1 so that both dialects read them alike.
 */
type Id = Generated<number>;
type Blob = Uint8Array;

export interface HostsTable {
  host_id: string;
  name: string;
  /** pending | approved | revoked */
  status: string;
  ssh_key: string;
  ssh_fingerprint: string;
  signing_key: string;
  enrolled_at: number;
  approved_at: number | null;
  revoked_at: number | null;
  os: string | null;
  kernel: string | null;
  arch: string | null;
  timezone: string | null;
  machine_id: string | null;
  boot_id: string | null;
  /** pofr version the client last announced (migration 0006); null until it says */
  client_version: string | null;
  boot_time: number | null;
  first_seen: number | null;
  last_seen: number | null;
  last_batch_at: number | null;
  last_seq: number | null;
  last_hash: string | null;
  /** Hex root of the host's forward-secure seal keys, from enrollment; NULL: enrolled before sealing. */
  seal_seed: string | null;
  /** The first sequence number sealed (1, or later for a client that enrolled again to start sealing). */
  seal_from: number | null;
}

export interface EnrollmentTokensTable {
  token_hash: string;
  created_at: number;
  expires_at: number;
  uses_left: number;
  approve: number;
}

export interface EnrollmentsTable {
  id: Id;
  host_id: string | null;
  at: number;
  /** token | password */
  method: string;
  token_hash: string | null;
  remote: string | null;
  /** approved | pending | refused */
  outcome: string;
  reason: string | null;
}

export interface BatchesTable {
  host_id: string;
  seq: number;
  hash: string;
  prev_hash: string;
  payload_sha256: string;
  boot_id: string;
  t_from: number;
  t_to: number;
  record_count: number;
  bytes: number;
  received_at: number;
  /** genesis | ok | gap | fork: how this batch links to the one stored before it */
  chain: string;
}

export interface BatchEvidenceTable {
  host_id: string;
  seq: number;
  /** The signed batch exactly as received: every stored row can be re-derived from it. */
  raw: Blob;
}

export interface RefusedBatchesTable {
  id: Id;
  host_id: string | null;
  seq: number | null;
  received_at: number;
  code: string;
  reason: string;
  bytes: number;
  raw: Blob | null;
}

export interface GapsTable {
  id: Id;
  host_id: string;
  /** seq_gap | fork | recorder | crash (the window a recorder_crash record says the recorder was blind) */
  kind: string;
  seq: number;
  t_from: number | null;
  t_to: number | null;
  detail: string;
  at: number;
}

export interface ProcessesTable {
  id: Id;
  host_id: string;
  boot_id: string;
  pid: number;
  start_ticks: number;
  /** 0 for the image seen at start, 1.. for each later exec of the same process */
  exec_index: number;
  start: number;
  end: number | null;
  /** exit | exec | keyframe (found gone at a keyframe) */
  end_reason: string | null;
  ppid: number;
  parent_id: number | null;
  exe: string | null;
  exe_raw: Blob | null;
  comm: string;
  comm_raw: Blob | null;
  /** JSON array of display strings */
  argv: string;
  /** every argument followed by a NUL, exactly as /proc/PID/cmdline; only when not UTF-8 */
  argv_raw: Blob | null;
  cmdline: string;
  cwd: string | null;
  cwd_raw: Blob | null;
  ruid: number;
  euid: number;
  rgid: number;
  egid: number;
  user: string | null;
  source: string;
  observer: number;
  /** probe | proc | event (see protocol's argv_source); null before exec tracing */
  argv_source: string | null;
  /** 1 when argv is whole, 0 when cut or standing in for a gone process; null before exec tracing */
  argv_complete: number | null;
  open_ord: number;
  close_ord: number | null;
  /** cgroup path (text; cgroup_raw the exact bytes when not UTF-8); null when unknown or before */
  cgroup: string | null;
  cgroup_raw: Blob | null;
  /** 64-hex id of the docker/containerd/CRI-O/podman container the cgroup names */
  container_id: string | null;
  /** namespace inodes (/proc/PID/ns/*) */
  ns_pid: number | null;
  ns_net: number | null;
  ns_mnt: number | null;
  ns_user: number | null;
}

export interface FileOpensTable {
  id: Id;
  host_id: string;
  process_id: number;
  pid: number;
  fd: number;
  path: string;
  path_raw: Blob | null;
  kind: string;
  first_seen: number;
  last_seen: number;
  is_open: number;
  open_ord: number;
  close_ord: number | null;
}

export interface EndpointsTable {
  id: Id;
  host_id: string;
  boot_id: string;
  key: string;
  process_id: number | null;
  pid: number | null;
  proto: string;
  family: number;
  local_ip: string;
  local_port: number;
  remote_ip: string;
  remote_port: number;
  state: string;
  inode: number;
  /** Network namespace (inode of /proc/PID/ns/net); NULL when the recorder did not know it. */
  netns: number | null;
  first_seen: number;
  last_seen: number;
  is_open: number;
  country: string | null;
  city: string | null;
  fqdn: string | null;
  /** Autonomous system of the remote address and who holds it (enrichment at ingest). */
  asn: number | null;
  as_org: string | null;
  /** Names and build dates of the databases that gave country, city and ASN. */
  geo_db: string | null;
  /** When reverse DNS answered for `fqdn` (µs), null while not looked up. */
  fqdn_at: number | null;
  open_ord: number;
  close_ord: number | null;
}

export interface EndpointStatesTable {
  id: Id;
  endpoint_id: number;
  host_id: string;
  t: number;
  state: string;
  ord: number;
}

/** Inventory tables share one shape: a row is valid from `valid_from` until `valid_to` (NULL: still). */
interface Validity {
  host_id: string;
  valid_from: number;
  valid_to: number | null;
}
export interface UsersTable extends Validity {
  uid: number;
  gid: number;
  name: string;
  home: string;
  shell: string;
}
export interface GroupsTable extends Validity {
  gid: number;
  name: string;
  members: string;
}
export interface InterfacesTable extends Validity {
  name: string;
  mac: string | null;
  addresses: string;
}
export interface RoutesTable extends Validity {
  family: number;
  destination: string;
  gateway: string;
  dev: string;
  metric: number;
}
export interface DevicesTable extends Validity {
  bus: string;
  device_id: string;
  vendor_id: string | null;
  product_id: string | null;
  name: string | null;
  serial: string | null;
}

export interface AlertsTable {
  id: Id;
  host_id: string;
  t: number;
  severity: string;
  rule: string;
  summary: string;
  detail: string | null;
  created_at: ColumnType<number, number, never>;
  /** Migration 0014 (null on older rows): the rule's author, the matched row and its batch. */
  author: string | null;
  /** processes, endpoints or file_opens */
  source_table: string | null;
  row_id: number | null;
  pid: number | null;
  batch_seq: number | null;
  batch_hash: string | null;
}

/**
 * The recorder's own health records (recorder_start, _stop, _crash, _heartbeat), one row each.
 * `heartbeat_ms`/`batch_ms` are what a start or a heartbeat promised: the server judges lateness
 * by them.
 */
export interface RecorderEventsTable {
  id: Id;
  host_id: string;
  boot_id: string;
  seq: number;
  ord: number;
  t: number;
  /** start | stop | crash | heartbeat */
  kind: string;
  pid: number;
  config_hash: string | null;
  heartbeat_ms: number | null;
  batch_ms: number | null;
  /** The record's other fields as JSON. */
  detail: string;
}

/** One name lookup by a process (a `dns_query` record). */
export interface DnsQueriesTable {
  id: Id;
  host_id: string;
  boot_id: string;
  seq: number;
  ord: number;
  t: number;
  /** The process image that looked it up; null when the store does not know the process. */
  process_id: number | null;
  pid: number;
  start_ticks: number;
  /** The resolver function probed: getaddrinfo, gethostbyname, … */
  func: string;
  name: string;
  name_raw: Blob | null;
}

/** A change of a process's ids without an exec (a `cred_change` record). */
export interface CredChangesTable {
  id: Id;
  host_id: string;
  boot_id: string;
  seq: number;
  ord: number;
  t: number;
  process_id: number | null;
  pid: number;
  start_ticks: number;
  /** The system call seen: setuid, setresuid, setgid, … */
  call: string;
  old_ruid: number;
  old_euid: number;
  old_rgid: number;
  old_egid: number;
  new_ruid: number;
  new_euid: number;
  new_rgid: number;
  new_egid: number;
}

/** One refused attempt (docs/schema.md "Audit"), or a count of refusals the rate limit did not write. */
export interface AuditEventsTable {
  id: Id;
  at: number;
  /** "ip:port" of the peer, when known. */
  remote: string | null;
  /** The peer's address alone: what the per-source rate limit counts. */
  source: string | null;
  fingerprint: string | null;
  host_id: string | null;
  ssh_user: string | null;
  /** unknown_key, revoked_key, exec_refused, batch_seal, suppressed, … (src/roles/server/audit-kinds.ts) */
  kind: string;
  /** The POFR_… error code, when the refusal has one. */
  code: string | null;
  reason: string;
  /** For kind 'suppressed': how many refusals from `source` this row stands for. */
  suppressed: ColumnType<number, number | undefined, number>;
}

/** Server-wide settings as JSON text, e.g. `registration_password`. */
export interface ServerSettingsTable {
  name: string;
  value: string;
  updated_at: number;
}

/** One prune of one host's record (`pofr server prune`, migration 0012). */
export interface PrunesTable {
  id: Id;
  host_id: string;
  /** The first batch kept: every batch below it was pruned, with what only it derived. */
  before_seq: number;
  /** The hash of batch before_seq - 1: the kept chain links to it. */
  last_hash: string;
  /** The boot of batch before_seq - 1 (re-deriving the kept batches starts in that boot). */
  boot_id: string;
  /** The newest recorded time pruned (t_to of batch before_seq - 1), µs. */
  t_to: number;
  /** The cutoff asked for: batches that ended before it were pruned, µs. */
  older_than: number;
  at: number;
  /** Batches pruned, and rows of every table deleted with them, by this prune. */
  batches: number;
  rows: number;
  /** sha256 of the rows left standing at the cut (migration 0013); null for prunes before it. */
  state_sha256: string | null;
}

export interface Database {
  hosts: HostsTable;
  enrollment_tokens: EnrollmentTokensTable;
  enrollments: EnrollmentsTable;
  batches: BatchesTable;
  batch_evidence: BatchEvidenceTable;
  refused_batches: RefusedBatchesTable;
  gaps: GapsTable;
  processes: ProcessesTable;
  file_opens: FileOpensTable;
  endpoints: EndpointsTable;
  endpoint_states: EndpointStatesTable;
  users: UsersTable;
  groups: GroupsTable;
  interfaces: InterfacesTable;
  routes: RoutesTable;
  devices: DevicesTable;
  alerts: AlertsTable;
  server_settings: ServerSettingsTable;
  recorder_events: RecorderEventsTable;
  audit_events: AuditEventsTable;
  prunes: PrunesTable;
  dns_queries: DnsQueriesTable;
  cred_changes: CredChangesTable;
}
