import { type RawBuilder, sql } from 'kysely';

/** How a Sigma field reads from pofr's tables: a SQL expression over the logsource's base query. */
export interface FieldMapping {
  readonly expr: RawBuilder<unknown>;
  /** text: matched as strings; int: numbers compared as numbers (strings with wildcards as text). */
  readonly type: 'text' | 'int';
  /**
   * Read through a join or subquery beyond the row's own table and its host (a parent's image, the
   * owning process's, a looked-up name): a hunt reads it only for the rows some rule needs it of.
   */
  readonly dear?: true;
}

/** A Sigma logsource category pofr records, and the table its events come from. */
export interface LogSource {
  readonly category: string;
  /** The table the matched rows come from (the alert's `table`). */
  readonly table: 'processes' | 'endpoints' | 'file_opens';
  readonly fields: Readonly<Record<string, FieldMapping>>;
  /** Columns of the matched row, selected beside the fixed alert columns. */
  readonly columns: RawBuilder<unknown>;
  /** FROM … JOIN …: aliases h (hosts), b (the batch that recorded the row) and the table's own. */
  readonly from: RawBuilder<unknown>;
  /** The same rows without the batch (live detection knows it): what every field reads. */
  readonly scan: RawBuilder<unknown>;
  /** The same rows again, with only what the fields that are not `dear` read. */
  readonly cheapScan: RawBuilder<unknown>;
  /** The row's host, time (µs) and row id: the window, host filter and order use them. */
  readonly hostId: RawBuilder<unknown>;
  readonly time: RawBuilder<unknown>;
  readonly id: RawBuilder<unknown>;
  /** `open_ord` of the row: seq × 1,000,000 + record index of the record that opened it. */
  readonly ord: RawBuilder<unknown>;
  /** What every row must satisfy to be an event of this category (e.g. a connection, not a listener). */
  readonly base: RawBuilder<unknown> | null;
}

// pofr's own fields, beside Sigma's: the host's name, the container and the ids of the process.
// `dear` when the process is another table's row (of an endpoint).
const pofrFields = (p: string, dear?: true): Record<string, FieldMapping> => ({
  Host: { expr: sql.raw('h.name'), type: 'text' },
  ContainerId: { expr: sql.raw(`${p}.container_id`), type: 'text', dear },
  Uid: { expr: sql.raw(`${p}.ruid`), type: 'int', dear },
  Euid: { expr: sql.raw(`${p}.euid`), type: 'int', dear },
});

// A name where the store has it (users at that time), else the uid, so `User: root` and `User: '0'`
// both have something to match.
const userOf = (p: string) => sql.raw(`coalesce(${p}."user", cast(${p}.ruid as text))`);

// Every row keeps `open_ord` = seq × 1,000,000 + record index (docs/schema.md "Order"): the batch that
// recorded it is seq = open_ord / 1,000,000 (integer division on both engines).
const fromAndScan = (rows: string, alias: string, cheapRows: string = rows) => ({
  from: sql.raw(
    `${rows} left join batches b on b.host_id = ${alias}.host_id and b.seq = ${alias}.open_ord / 1000000`,
  ),
  scan: sql.raw(rows),
  cheapScan: sql.raw(cheapRows),
});

const processCreation: LogSource = {
  category: 'process_creation',
  table: 'processes',
  fields: {
    Image: { expr: sql.raw('p.exe'), type: 'text' },
    CommandLine: { expr: sql.raw('p.cmdline'), type: 'text' },
    CurrentDirectory: { expr: sql.raw('p.cwd'), type: 'text' },
    User: { expr: userOf('p'), type: 'text' },
    ProcessId: { expr: sql.raw('p.pid'), type: 'int' },
    ParentProcessId: { expr: sql.raw('p.ppid'), type: 'int' },
    ParentImage: { expr: sql.raw('pp.exe'), type: 'text', dear: true },
    ParentCommandLine: { expr: sql.raw('pp.cmdline'), type: 'text', dear: true },
    ParentUser: { expr: userOf('pp'), type: 'text', dear: true },
    ...pofrFields('p'),
  },
  columns: sql.raw(
    `p.id as process_id, p.boot_id, p.start_ticks, p.exec_index, p.ppid, p.exe, p.cmdline, p.cwd, ${`coalesce(p."user", cast(p.ruid as text))`} as "user", p.ruid, p.euid, p.container_id, pp.exe as parent_exe, pp.cmdline as parent_cmdline`,
  ),
  ...fromAndScan(
    'processes p join hosts h on h.host_id = p.host_id left join processes pp on pp.id = p.parent_id',
    'p',
    'processes p join hosts h on h.host_id = p.host_id',
  ),
  hostId: sql.raw('p.host_id'),
  time: sql.raw('p.start'),
  id: sql.raw('p.id'),
  ord: sql.raw('p.open_ord'),
  base: null,
};

// The name the process looked up last before the connection (issue 7's `looked_up`, as `pofr net`
// computes it), else the reverse DNS answer enrichment stored: which one is said in hostname_source.
const lookedUp =
  '(select d.name from dns_queries d where d.process_id = e.process_id and d.t <= e.first_seen order by d.t desc, d.ord desc limit 1)';

const networkConnection: LogSource = {
  category: 'network_connection',
  table: 'endpoints',
  fields: {
    Image: { expr: sql.raw('p.exe'), type: 'text', dear: true },
    CommandLine: { expr: sql.raw('p.cmdline'), type: 'text', dear: true },
    User: { expr: userOf('p'), type: 'text', dear: true },
    ProcessId: { expr: sql.raw('e.pid'), type: 'int' },
    Protocol: { expr: sql.raw('e.proto'), type: 'text' },
    SourceIp: { expr: sql.raw('e.local_ip'), type: 'text' },
    SourcePort: { expr: sql.raw('e.local_port'), type: 'int' },
    DestinationIp: { expr: sql.raw('e.remote_ip'), type: 'text' },
    DestinationPort: { expr: sql.raw('e.remote_port'), type: 'int' },
    DestinationHostname: { expr: sql.raw(`coalesce(${lookedUp}, e.fqdn)`), type: 'text', dear: true },
    // The recorder does not say who opened a connection: the side on the lower port is taken as the
    // service (network-summary's rule), so local port above remote port means this host initiated.
    Initiated: {
      expr: sql.raw(`case when e.local_port > e.remote_port then 'true' else 'false' end`),
      type: 'text',
    },
    ...pofrFields('p', true),
  },
  columns: sql.raw(
    `e.id as endpoint_id, e.boot_id, e.proto, e.local_ip, e.local_port, e.remote_ip, e.remote_port, e.state, e.country, ${lookedUp} as looked_up, e.fqdn, case when ${lookedUp} is not null then 'looked_up' when e.fqdn is not null then 'reverse_dns' else null end as hostname_source, p.id as process_id, p.exe, p.cmdline, coalesce(p."user", cast(p.ruid as text)) as "user"`,
  ),
  ...fromAndScan(
    'endpoints e join hosts h on h.host_id = e.host_id left join processes p on p.id = e.process_id',
    'e',
    'endpoints e join hosts h on h.host_id = e.host_id',
  ),
  hostId: sql.raw('e.host_id'),
  time: sql.raw('e.first_seen'),
  id: sql.raw('e.id'),
  ord: sql.raw('e.open_ord'),
  // A connection has a remote side; a listener or an unconnected UDP socket is not one.
  base: sql.raw('e.remote_port <> 0'),
};

// pofr records the files a process holds open (file_opens), not the kernel's create events: a file
// rule matches every file seen open, which includes its creation when the creator was seen holding it.
const fileEvent = (category: string): LogSource => ({
  category,
  table: 'file_opens',
  fields: {
    TargetFilename: { expr: sql.raw('f.path'), type: 'text' },
    Image: { expr: sql.raw('p.exe'), type: 'text' },
    CommandLine: { expr: sql.raw('p.cmdline'), type: 'text' },
    User: { expr: userOf('p'), type: 'text' },
    ProcessId: { expr: sql.raw('f.pid'), type: 'int' },
    ...pofrFields('p'),
  },
  columns: sql.raw(
    `f.id as file_id, f.path, f.fd, f.kind, f.is_open, p.id as process_id, p.boot_id, p.exe, p.cmdline, coalesce(p."user", cast(p.ruid as text)) as "user"`,
  ),
  ...fromAndScan(
    'file_opens f join hosts h on h.host_id = f.host_id join processes p on p.id = f.process_id',
    'f',
  ),
  hostId: sql.raw('f.host_id'),
  time: sql.raw('f.first_seen'),
  id: sql.raw('f.id'),
  ord: sql.raw('f.open_ord'),
  base: null,
});

/** The logsource categories pofr records (product linux, or no product). */
export const LOGSOURCES: Readonly<Record<string, LogSource>> = Object.freeze({
  process_creation: processCreation,
  network_connection: networkConnection,
  file_event: fileEvent('file_event'),
  file_create: fileEvent('file_create'),
  file_access: fileEvent('file_access'),
});
