import type { Writable } from 'node:stream';

/** One column of a table for people; JSON output ignores columns and prints whole rows. */
export interface Column {
  readonly key: string;
  readonly header: string;
  /** Renders the value for the table; the default prints strings as they are, null as '-'. */
  readonly format?: (v: unknown) => string;
  /** Longer cells are cut to this many characters, ending in '…' (default 80). */
  readonly maxWidth?: number;
  /** Numbers read better right-aligned. */
  readonly align?: 'left' | 'right';
}

export interface PrintOptions {
  readonly json: boolean;
  readonly columns: readonly Column[];
}

const DEFAULT_MAX_WIDTH = 80;
const FLUSH_AT = 64 * 1024;

/**
 * Prints rows on stdout: JSON Lines (one object per row, keys as given, nothing else) with `json`,
 * else an aligned table whose cells cannot carry control characters to the terminal. An empty
 * table prints "(no rows)" on stderr so that stdout stays empty for scripts that count lines.
 *
 * @example
 * printRows([{ pid: 1, cmdline: 'init' }], { json: false, columns: [{ key: 'pid', header: 'PID' },
 *   { key: 'cmdline', header: 'COMMAND' }] });
 */
export function printRows(
  rows: readonly object[],
  opts: PrintOptions,
  out: Writable = process.stdout,
  err: Writable = process.stderr,
): void {
  if (opts.json) {
    writeChunked(
      out,
      rows.map((r) => `${JSON.stringify(r)}\n`),
    );
    return;
  }
  if (rows.length === 0) {
    err.write('(no rows)\n');
    return;
  }
  writeChunked(out, renderTable(rows, opts.columns));
}

/** The table as lines (each ending in a newline), header first. */
export function renderTable(rows: readonly object[], columns: readonly Column[]): string[] {
  const cells = rows.map((row) =>
    columns.map((c) => {
      const value = (row as Record<string, unknown>)[c.key];
      const text = c.format ? c.format(value) : defaultFormat(value);
      return truncate(escapeControl(text), c.maxWidth ?? DEFAULT_MAX_WIDTH);
    }),
  );
  const headers = columns.map((c) => escapeControl(c.header));
  const widths = columns.map((_, i) => cells.reduce((w, r) => Math.max(w, width(r[i])), width(headers[i])));
  const line = (values: readonly string[]): string =>
    `${values
      .map((v, i) => (columns[i].align === 'right' ? padStart(v, widths[i]) : padEnd(v, widths[i])))
      .join('  ')
      .trimEnd()}\n`;
  return [line(headers), ...cells.map(line)];
}

function defaultFormat(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map((x) => defaultFormat(x)).join(' ');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const NAMED: Readonly<Record<string, string>> = Object.freeze({ '\n': '\\n', '\r': '\\r', '\t': '\\t' });

/**
 * Makes every character that could move the cursor, recolour or reprogram the terminal, or reorder
 * text visible: C0 and C1 controls (ESC, 8-bit CSI), DEL, line/paragraph separators and bidi
 * overrides. A hostile command line or file name then shows as text instead of acting.
 */
export function escapeControl(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const named = NAMED[c];
    if (named) return named;
    const code = c.codePointAt(0)!;
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

function truncate(s: string, max: number): string {
  const chars = Array.from(s);
  if (chars.length <= max) return s;
  return `${chars.slice(0, Math.max(0, max - 1)).join('')}…`;
}

function width(s: string): number {
  return Array.from(s).length;
}

function padEnd(s: string, w: number): string {
  return s + ' '.repeat(Math.max(0, w - width(s)));
}

function padStart(s: string, w: number): string {
  return ' '.repeat(Math.max(0, w - width(s))) + s;
}

function writeChunked(out: Writable, lines: readonly string[]): void {
  let buf = '';
  for (const l of lines) {
    buf += l;
    if (buf.length >= FLUSH_AT) {
      out.write(buf);
      buf = '';
    }
  }
  if (buf) out.write(buf);
}
