import type { LogSource } from './logsources.js';

/**
 * The process and file rows one batch inserted, with the values ingest wrote (its
 * BatchApplier.createdRows): live detection tests its rules on these without reading them back,
 * and asks the store only for the rows whose fields it cannot tell from them.
 */
export interface WrittenRows {
  readonly processes: readonly WrittenProcess[];
  readonly files: readonly WrittenFile[];
}

/** The columns of a written `processes` row that the field mapping reads (undefined: NULL). */
export interface WrittenProcess {
  readonly id: number;
  readonly start: number;
  readonly open_ord: number;
  readonly pid: number;
  readonly ppid: number;
  readonly parent_id?: number | null;
  readonly exe?: string | null;
  readonly cmdline: string;
  readonly cwd?: string | null;
  readonly user?: string | null;
  readonly ruid: number;
  readonly euid: number;
  readonly container_id?: string | null;
}

/** The columns of a written `file_opens` row that the field mapping reads. */
export interface WrittenFile {
  readonly id: number;
  readonly process_id: number;
  readonly pid: number;
  readonly path: string;
  readonly first_seen: number;
  readonly open_ord: number;
}

/** A field whose value only the store has (the host's name, a row of an earlier batch). */
const UNKNOWN: unique symbol = Symbol('unknown');
type Value = unknown;

const nul = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
// `coalesce(p."user", cast(p.ruid as text))` (logsources.ts userOf).
const userOf = (p: WrittenProcess) => nul(p.user) ?? String(p.ruid);

type ProcessOf = (id: number | null | undefined) => WrittenProcess | null | typeof UNKNOWN;

/**
 * Per Sigma field, its value on a written row exactly as the logsource's SQL expression reads it
 * (logsources.ts), or UNKNOWN. A missing field (pofr's Host) is UNKNOWN: the store decides.
 */
const PROCESS_FIELDS: Readonly<Record<string, (p: WrittenProcess, processOf: ProcessOf) => Value>> = {
  Image: (p) => nul(p.exe),
  CommandLine: (p) => p.cmdline,
  CurrentDirectory: (p) => nul(p.cwd),
  User: userOf,
  ProcessId: (p) => p.pid,
  ParentProcessId: (p) => p.ppid,
  // `left join processes pp on pp.id = p.parent_id`: no parent id, no parent row, NULL fields.
  ParentImage: (p, processOf) => parentField(p, processOf, (pp) => nul(pp.exe)),
  ParentCommandLine: (p, processOf) => parentField(p, processOf, (pp) => pp.cmdline),
  ParentUser: (p, processOf) => parentField(p, processOf, userOf),
  ContainerId: (p) => nul(p.container_id),
  Uid: (p) => p.ruid,
  Euid: (p) => p.euid,
};

function parentField(p: WrittenProcess, processOf: ProcessOf, field: (pp: WrittenProcess) => Value): Value {
  const pp = processOf(p.parent_id);
  return pp === UNKNOWN ? UNKNOWN : pp === null ? null : field(pp);
}

// `join processes p on p.id = f.process_id`: the file's process, when this batch wrote it.
const FILE_FIELDS: Readonly<Record<string, (f: WrittenFile, processOf: ProcessOf) => Value>> = {
  TargetFilename: (f) => f.path,
  ProcessId: (f) => f.pid,
  ...Object.fromEntries(
    (['Image', 'CommandLine', 'User', 'ContainerId', 'Uid', 'Euid'] as const).map((name) => [
      name,
      (f: WrittenFile, processOf: ProcessOf) => {
        const p = processOf(f.process_id);
        // An inner join: a process the store does not have leaves no row; only the store can say.
        return p === UNKNOWN || p === null ? UNKNOWN : PROCESS_FIELDS[name](p, processOf);
      },
    ]),
  ),
};

/** One row as live detection tests it: its id, time and the values of the table's fields by slot. */
export interface KnownRow {
  readonly id: number;
  readonly time: number;
  readonly values: unknown[];
}

/**
 * The written rows of `source`'s table (processes or file opens) that the batch opened: `known`,
 * each with every field in `fields` (a table plan's slots) as its SQL reads it, where every such
 * field can be told; `unknown`, the ids of the others, left to the store. These are all the rows
 * the batch opened in that table: ingest inserts them at one place (BatchApplier.flushWrites) and
 * never changes a row's open_ord (test/detect/live-predicate.test.ts holds both). Null for
 * another table.
 */
export function knownRows(
  source: LogSource,
  fields: readonly string[],
  written: WrittenRows,
  ords: { readonly from: number; readonly to: number },
): { known: KnownRow[]; unknown: number[] } | null {
  const table =
    source.table === 'processes' ? PROCESS_FIELDS : source.table === 'file_opens' ? FILE_FIELDS : null;
  if (table === null) return null;
  const byId = new Map(written.processes.map((p) => [p.id, p]));
  const processOf: ProcessOf = (id) => (id === null || id === undefined ? null : (byId.get(id) ?? UNKNOWN));
  const getters = fields.map((name) => table[name] as ((r: never, p: ProcessOf) => Value) | undefined);
  const rows = source.table === 'processes' ? written.processes : written.files;
  const out: KnownRow[] = [];
  const unknown: number[] = [];
  for (const r of rows) {
    // The rows the batch opened: as the store's read selects them (open_ord in the batch's range).
    if (r.open_ord < ords.from || r.open_ord >= ords.to) continue;
    const values = new Array<unknown>(getters.length);
    let known = true;
    for (let i = 0; i < getters.length && known; i++) {
      const g = getters[i];
      const v = g === undefined ? UNKNOWN : g(r as never, processOf);
      if (v === UNKNOWN) known = false;
      else values[i] = v;
    }
    if (!known) {
      unknown.push(r.id);
      continue;
    }
    const time = 'start' in r ? r.start : r.first_seen;
    out.push({ id: r.id, time, values });
  }
  return { known: out, unknown };
}
