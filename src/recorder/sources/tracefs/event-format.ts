/**
 * The layout of one trace event as its `format` file describes it. The recorder reads events in the
 * kernel's binary form (trace_pipe_raw), so the field offsets come from the running kernel itself,
 * never from a compiled-in guess: they change between kernel versions.
 */
export interface EventField {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly signed: boolean;
  /** `__data_loc`: a u32 at `offset` holding (length << 16 | offset from the record's start). */
  readonly dataLoc: boolean;
  /** `__rel_loc`: like dataLoc, but the offset counts from the end of this field. */
  readonly relLoc: boolean;
}

export interface EventFormat {
  readonly system: string;
  readonly name: string;
  /** The event's id: the `common_type` of each of its records. */
  readonly id: number;
  readonly fields: ReadonlyMap<string, EventField>;
}

const FIELD_LINE = /^\s*field:(.+);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);/;

/**
 * Parses the text of `events/<system>/<name>/format`.
 *
 * @example
 * parseEventFormat('sched', readFileSync('…/events/sched/sched_process_exec/format', 'utf8'))
 *   .fields.get('pid') // => { offset: 12, size: 4, signed: true, … }
 */
export function parseEventFormat(system: string, text: string): EventFormat {
  const name = /^name:\s*(\S+)/m.exec(text)?.[1];
  const id = Number(/^ID:\s*(\d+)/m.exec(text)?.[1]);
  if (name === undefined || !Number.isInteger(id)) {
    throw new Error(`not a trace event format (no name or ID line): ${text.slice(0, 80)}`);
  }
  const fields = new Map<string, EventField>();
  for (const line of text.split('\n')) {
    const m = FIELD_LINE.exec(line);
    if (!m) continue;
    const decl = m[1].trim();
    // "unsigned char comm[16]", "__data_loc char[] filename", "const void * skaddr"
    const fieldName = /([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[[^\]]*\])?$/.exec(decl)?.[1];
    if (fieldName === undefined) continue;
    fields.set(fieldName, {
      name: fieldName,
      offset: Number(m[2]),
      size: Number(m[3]),
      signed: m[4] === '1',
      dataLoc: decl.startsWith('__data_loc'),
      relLoc: decl.startsWith('__rel_loc'),
    });
  }
  return { system, name, id, fields };
}

/** The field, or an error naming the event and what this kernel offers instead. */
export function requireField(format: EventFormat, name: string): EventField {
  const f = format.fields.get(name);
  if (f === undefined) {
    throw new Error(
      `trace event ${format.system}:${format.name} has no field ${name} on this kernel ` +
        `(it has ${[...format.fields.keys()].join(', ')})`,
    );
  }
  return f;
}

/** Reads an integer field of 1, 2, 4 or 8 bytes (8-byte values lose precision past 2^53). */
export function readIntField(buf: Buffer, base: number, f: EventField): number {
  const at = base + f.offset;
  switch (f.size) {
    case 1:
      return f.signed ? buf.readInt8(at) : buf.readUInt8(at);
    case 2:
      return f.signed ? buf.readInt16LE(at) : buf.readUInt16LE(at);
    case 4:
      return f.signed ? buf.readInt32LE(at) : buf.readUInt32LE(at);
    case 8: {
      // Two 32-bit halves, not a BigInt: each BigInt was a heap object, and syscall returns, close
      // fds, clone flags and the argv probe's pointers are 8 bytes wide (a tenth of the recorder's
      // allocation under an exec storm). hi × 2^32 is exact and adding lo rounds once, so the value
      // is the one Number(BigInt) gives, exact below 2^53.
      const lo = buf.readUInt32LE(at);
      const hi = f.signed ? buf.readInt32LE(at + 4) : buf.readUInt32LE(at + 4);
      return hi * 0x1_0000_0000 + lo;
    }
    default:
      throw new Error(`field ${f.name} has size ${f.size}, not an integer size`);
  }
}

/**
 * The bytes of a dynamic (`__data_loc` / `__rel_loc`) field, without the trailing NUL the kernel
 * stores for strings, or null when the kernel stored none (a failed user-memory fetch has length 0).
 * A view into `buf`: copy it to keep it.
 */
export function readDynamicField(buf: Buffer, base: number, f: EventField, recordEnd: number): Buffer | null {
  const loc = buf.readUInt32LE(base + f.offset);
  const len = loc >>> 16;
  let start = loc & 0xffff;
  start += f.relLoc ? base + f.offset + 4 : base;
  if (len === 0 || start + len > recordEnd) return null;
  const end = buf[start + len - 1] === 0 ? start + len - 1 : start + len;
  return buf.subarray(start, end);
}

/** The length the kernel stored for a dynamic field, its NUL included (0: nothing stored). */
export function dynamicFieldLength(buf: Buffer, base: number, f: EventField): number {
  return buf.readUInt32LE(base + f.offset) >>> 16;
}

/** A fixed-size char array field (e.g. comm[16]) up to its first NUL. A view into `buf`. */
export function readCharArrayField(buf: Buffer, base: number, f: EventField): Buffer {
  const start = base + f.offset;
  const nul = buf.indexOf(0, start);
  const end = nul < 0 || nul > start + f.size ? start + f.size : nul;
  return buf.subarray(start, end);
}
