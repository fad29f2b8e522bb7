import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readlinkSync, readSync, statSync } from 'node:fs';
import type { FileKind } from '../../protocol/index.js';

/**
 * Pure readers of /proc. Each takes the proc root so that unit tests can point at a fixture tree.
 * Races are normal here: a process can vanish between readdir and read, so every per-process read
 * returns 'gone' (ENOENT, ESRCH) or 'denied' (EACCES, EPERM: not root) instead of throwing.
 */
export type ReadFailure = 'gone' | 'denied';

export const DEFAULT_PROC_ROOT = '/proc';

function failureOf(e: unknown): ReadFailure {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'denied';
  // ENOTDIR/EINVAL/ENXIO show up when the pid dir is torn down under us; all mean "not there now".
  if (code === 'ENOENT' || code === 'ESRCH' || code === 'ENOTDIR' || code === 'EINVAL' || code === 'ENXIO') {
    return 'gone';
  }
  throw e;
}

export function isReadFailure(v: unknown): v is ReadFailure {
  return v === 'gone' || v === 'denied';
}

// One scratch buffer for every small procfs read: the sampler reads thousands of tiny files per
// cycle and a fresh Buffer per file would be most of the garbage it makes.
let scratch = Buffer.allocUnsafe(64 * 1024);

/**
 * Reads a whole procfs file into a shared scratch buffer and returns a view of it, valid only until
 * the next read: parse or copy it at once.
 *
 * `shortReadIsEnd` saves the last, empty read(2), which is not free in procfs: a read shorter than
 * this many bytes ends the file. Infinity suits single_open files (stat, status, schedstat) and
 * cmdline, which hand over everything that fits in the first read; seq files of many records
 * (net/tcp) fill one kernel page per read, so a read shorter than a page minus the longest record
 * is their last (and on a large TCP hash table each extra read walks all of it); 0 reads to EOF.
 */
export function readProcFile(path: string, shortReadIsEnd = 0): Buffer | ReadFailure {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    return failureOf(e);
  }
  try {
    let len = 0;
    for (;;) {
      if (scratch.length - len < 8192) {
        const bigger = Buffer.allocUnsafe(scratch.length * 2);
        scratch.copy(bigger, 0, 0, len);
        scratch = bigger;
      }
      const want = scratch.length - len;
      const n = readSync(fd, scratch, len, want, null);
      len += n;
      if (n === 0 || (n < want && n < shortReadIsEnd)) break;
    }
    return scratch.subarray(0, len);
  } catch (e) {
    return failureOf(e);
  } finally {
    closeSync(fd);
  }
}

/** For readProcFile: the whole file comes in the first read that does not fill the buffer. */
export const ONE_READ = Number.POSITIVE_INFINITY;

/**
 * Opens a per-process procfs file to be read again and again with `preadProcFile`. The open file
 * is bound to the process, not to its pid number: once the process is gone every read fails with
 * ESRCH, even if the pid was reused, so a held stat or schedstat fd is both the cheapest way to
 * re-read it (one pread instead of open, read, close) and an exact identity check.
 * 'exhausted' means no file descriptor is left (EMFILE, ENFILE).
 */
export function openProcFile(path: string): number | ReadFailure | 'exhausted' {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EMFILE' || code === 'ENFILE') return 'exhausted';
    return failureOf(e);
  }
}

/** The whole text of a single_open procfs file held open, read from offset 0 (see readProcFile). */
export function preadProcFile(fd: number): Buffer | ReadFailure {
  try {
    for (;;) {
      const n = readSync(fd, scratch, 0, scratch.length, 0);
      if (n < scratch.length) return scratch.subarray(0, n);
      scratch = Buffer.allocUnsafe(scratch.length * 2);
    }
  } catch (e) {
    return failureOf(e);
  }
}

export function closeProcFile(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Closing a procfs fd cannot fail in a way that leaves anything to clean up.
  }
}

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start). */
export function readOpenFileLimit(): number {
  const buf = readProcFile('/proc/self/limits');
  if (isReadFailure(buf)) return 1024;
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(buf.toString('latin1'));
  if (!m) return 1024;
  return m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
}

/** Reads a symlink's target as raw bytes (paths are bytes, not always UTF-8). */
export function readLinkBytes(path: string): Buffer | ReadFailure {
  try {
    return readlinkSync(path, { encoding: 'buffer' });
  } catch (e) {
    return failureOf(e);
  }
}

/** Thread-group ids: the numeric directories of procRoot (threads are not listed there). */
export function listTgids(procRoot = DEFAULT_PROC_ROOT): number[] {
  const names = readdirSync(procRoot);
  const out: number[] = [];
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) {
      const pid = Number(name);
      if (Number.isInteger(pid)) out.push(pid);
    }
  }
  return out;
}

/** The fields of /proc/PID/stat the recorder uses. */
export interface ProcStat {
  pid: number;
  /** The raw comm bytes (up to 15, may hold spaces, parens, newlines, non-UTF-8). */
  comm: Buffer;
  state: string;
  ppid: number;
  /** Task flags (field 9); PF_KTHREAD marks kernel threads. */
  flags: number;
  /** utime + stime in clock ticks, summed over all threads. */
  cpuTicks: number;
  numThreads: number;
  /** Field 22: start time in clock ticks since boot. With pid, the process identity. */
  startTicks: number;
  /**
   * Addresses that every exec changes (start_code, end_code, start_stack, arg_start, arg_end:
   * a new mm, randomised by ASLR), folded into one number; 0 when the kernel hides them (not
   * permitted to ptrace-read the process).
   */
  execSignature: number;
}

const PF_KTHREAD = 0x0020_0000;

export function isKernelThread(stat: ProcStat): boolean {
  return (stat.flags & PF_KTHREAD) !== 0;
}

/**
 * Parses /proc/PID/stat. comm sits in parens and may itself contain ')', '(' , spaces or a
 * newline, so the fields start after the LAST ')' of the text.
 *
 * @example parseStat(Buffer.from('42 (a) b) S 1 42 42 0 -1 4194304 ...')).comm // => <Buffer 'a) b'>
 */
export function parseStat(buf: Buffer): ProcStat | null {
  const open = buf.indexOf(0x28);
  const close = buf.lastIndexOf(0x29);
  if (open < 0 || close < open) return null;
  const pid = parseDecimal(buf, 0, open - 1);
  const comm = Buffer.from(buf.subarray(open + 1, close));
  // Field numbers as in proc(5); field 3 (state) starts two bytes after ')'.
  let field = 3;
  let i = close + 2;
  const end = buf.length;
  let state = '';
  let ppid = 0;
  let flags = 0;
  let utime = 0;
  let stime = 0;
  let numThreads = 0;
  let startTicks = -1;
  let sig = 0;
  let hidden = true;
  while (i < end && field <= 49) {
    let j = i;
    while (j < end && buf[j] !== 0x20 && buf[j] !== 0x0a) j++;
    switch (field) {
      case 3:
        state = String.fromCharCode(buf[i]);
        break;
      case 4:
        ppid = parseDecimal(buf, i, j);
        break;
      case 9:
        flags = parseDecimal(buf, i, j);
        break;
      case 14:
        utime = parseDecimal(buf, i, j);
        break;
      case 15:
        stime = parseDecimal(buf, i, j);
        break;
      case 20:
        numThreads = parseDecimal(buf, i, j);
        break;
      case 22:
        startTicks = parseDecimal(buf, i, j);
        break;
      case 26:
      case 27:
      case 28:
      case 48:
      case 49: {
        // Only change detection needs this: a 32-bit hash of the addresses is enough.
        const x = parseDecimal(buf, i, j);
        if (x > 0) hidden = false;
        sig = Math.imul(sig ^ (x % 0x1_0000_0000), 0x9e37_79b1) ^ Math.floor(x / 0x1_0000_0000);
        break;
      }
    }
    field++;
    i = j + 1;
  }
  if (startTicks < 0 || Number.isNaN(pid)) return null;
  return {
    pid,
    comm,
    state,
    ppid,
    flags,
    cpuTicks: utime + stime,
    numThreads,
    startTicks,
    execSignature: hidden ? 0 : sig || 1,
  };
}

function parseDecimal(buf: Buffer, start: number, end: number): number {
  let n = 0;
  let i = start;
  let neg = false;
  if (buf[i] === 0x2d) {
    neg = true;
    i++;
  }
  if (i >= end) return Number.NaN;
  for (; i < end; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return Number.NaN;
    n = n * 10 + d;
  }
  return neg ? -n : n;
}

/**
 * Whether /proc still has the process. A stat that does not throw: for a process already gone it
 * costs a quarter of the failed open it saves (Node builds an Error, with its stack, for each).
 * The event sources ask it first, since most processes they hear of live a millisecond.
 */
export function procAlive(procRoot: string, pid: number): boolean {
  return statSync(`${procRoot}/${pid}`, { throwIfNoEntry: false }) !== undefined;
}

export function readStat(procRoot: string, pid: number): ProcStat | ReadFailure {
  const buf = readProcFile(`${procRoot}/${pid}/stat`, ONE_READ);
  if (isReadFailure(buf)) return buf;
  // An empty read means the task died between open and read.
  return parseStat(buf) ?? 'gone';
}

/** The identity fields of /proc/PID/status. */
export interface ProcStatus {
  tgid: number;
  ppid: number;
  ruid: number;
  euid: number;
  rgid: number;
  egid: number;
}

export function parseStatus(buf: Buffer): ProcStatus | null {
  // latin1 maps every byte to one char: the Name line may hold any bytes and must not derail parsing.
  const text = buf.toString('latin1');
  const tgid = statusField(text, 'Tgid:');
  const ppid = statusField(text, 'PPid:');
  const uids = statusField(text, 'Uid:', true);
  const gids = statusField(text, 'Gid:', true);
  if (tgid === null || ppid === null || uids === null || gids === null) return null;
  return { tgid: tgid[0], ppid: ppid[0], ruid: uids[0], euid: uids[1], rgid: gids[0], egid: gids[1] };
}

function statusField(text: string, name: string, pair = false): number[] | null {
  const at = text.startsWith(name) ? 0 : text.indexOf(`\n${name}`);
  if (at < 0) return null;
  const start = at === 0 ? name.length : at + 1 + name.length;
  let end = text.indexOf('\n', start);
  if (end < 0) end = text.length;
  const parts = text.slice(start, end).trim().split(/\s+/);
  const a = Number(parts[0]);
  const b = Number(parts[1]);
  if (!Number.isInteger(a) || (pair && !Number.isInteger(b))) return null;
  return pair ? [a, b] : [a];
}

export function readStatus(procRoot: string, pid: number): ProcStatus | ReadFailure {
  const buf = readProcFile(`${procRoot}/${pid}/status`, ONE_READ);
  if (isReadFailure(buf)) return buf;
  return parseStatus(buf) ?? 'gone';
}

/**
 * Splits a cmdline on NUL. The usual form ends with a NUL; a process that rewrote its argv (setproctitle)
 * may leave none, and kernel threads and zombies have an empty cmdline (no argv at all). Empty
 * arguments in the middle are real and kept. The returned buffers are copies.
 */
export function splitCmdline(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  const len = buf.length;
  while (start < len) {
    let nul = buf.indexOf(0, start);
    if (nul < 0) nul = len;
    out.push(Buffer.from(buf.subarray(start, nul)));
    start = nul + 1;
  }
  return out;
}

export function readCmdline(procRoot: string, pid: number): Buffer[] | ReadFailure {
  const buf = readProcFile(`${procRoot}/${pid}/cmdline`, ONE_READ);
  if (isReadFailure(buf)) return buf;
  return splitCmdline(buf);
}

/** /proc/PID/exe; null for kernel threads and zombies, which have none. */
export function readExe(procRoot: string, pid: number): Buffer | null | 'denied' {
  const r = readLinkBytes(`${procRoot}/${pid}/exe`);
  return r === 'gone' ? null : r;
}

export function readCwd(procRoot: string, pid: number): Buffer | null | 'denied' {
  const r = readLinkBytes(`${procRoot}/${pid}/cwd`);
  return r === 'gone' ? null : r;
}

/** First field of /proc/PID/schedstat: nanoseconds on CPU (of the thread-group leader). */
export function parseSchedRunNs(buf: Buffer): number {
  let j = 0;
  while (j < buf.length && buf[j] >= 0x30 && buf[j] <= 0x39) j++;
  // Float precision past 2^53 ns (104 days of CPU) still moves on any change the sampler cares about.
  return j === 0 ? 0 : parseDecimal(buf, 0, j);
}

export function readSchedRunNs(procRoot: string, pid: number): number | ReadFailure {
  const buf = readProcFile(`${procRoot}/${pid}/schedstat`, ONE_READ);
  if (isReadFailure(buf)) return buf;
  return parseSchedRunNs(buf);
}

/** fd number → raw link target, for every fd of the process. */
export function readFdTable(procRoot: string, pid: number): Map<number, Buffer> | ReadFailure {
  const dir = `${procRoot}/${pid}/fd`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    return failureOf(e);
  }
  const out = new Map<number, Buffer>();
  for (const name of names) {
    // /proc only has numeric fd names; anything else (a fixture tree's .gitkeep) is not an fd.
    const fd = Number(name);
    if (!Number.isInteger(fd) || name.length === 0) continue;
    const target = readLinkBytes(`${dir}/${name}`);
    if (target === 'denied') return 'denied';
    // An fd closed between readdir and readlink is simply not open any more.
    if (target === 'gone') continue;
    out.set(fd, target);
  }
  return out;
}

const SOCKET_PREFIX = Buffer.from('socket:[');
const PIPE_PREFIX = Buffer.from('pipe:[');
const ANON_PREFIX = Buffer.from('anon_inode:');
const DEV_PREFIX = Buffer.from('/dev/');

function startsWith(buf: Buffer, prefix: Buffer): boolean {
  return buf.length >= prefix.length && buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/**
 * Kind of an fd target from its link text. 'dir' needs a stat of the fd, which the caller passes
 * as `isDirectory` when it chose to pay for one; without it every absolute path is a 'file'.
 */
export function classifyFdTarget(target: Buffer, isDirectory?: () => boolean): FileKind {
  if (startsWith(target, SOCKET_PREFIX)) return 'socket';
  if (startsWith(target, PIPE_PREFIX)) return 'pipe';
  if (startsWith(target, ANON_PREFIX)) return 'anon';
  if (startsWith(target, DEV_PREFIX)) return 'dev';
  if (target[0] === 0x2f) return isDirectory?.() ? 'dir' : 'file';
  return 'other';
}

/** The inode of a 'socket:[123]' target, else 0. */
export function socketInode(target: Buffer | string): number {
  const s = typeof target === 'string' ? target : target.toString('latin1');
  if (!s.startsWith('socket:[')) return 0;
  const n = Number(s.slice(8, -1));
  return Number.isInteger(n) ? n : 0;
}

/**
 * Whether the fd points at a directory: stat through the fd's magic link, which reaches the open
 * inode without walking its path. Callers do it once per new fd, not per cycle.
 */
export function isFdDirectory(procRoot: string, pid: number, fd: number): boolean {
  try {
    return statSync(`${procRoot}/${pid}/fd/${fd}`, { throwIfNoEntry: false })?.isDirectory() ?? false;
  } catch {
    return false;
  }
}

/** The boot id: a random UUID the kernel draws at each boot. */
export function readBootId(procRoot = DEFAULT_PROC_ROOT): string {
  const buf = readProcFile(`${procRoot}/sys/kernel/random/boot_id`);
  if (isReadFailure(buf)) return '';
  return buf.toString('latin1').trim();
}

const bootTimes = new Map<string, number>();

/**
 * Boot wall-clock time in µs, computed once per proc root as now minus /proc/uptime, rounded to
 * 10 ms (btime in /proc/stat only has seconds). Computing it once keeps every start time derived
 * from it stable; an NTP step afterwards shifts new and old processes alike.
 */
export function readBootTimeMicros(procRoot = DEFAULT_PROC_ROOT): number {
  const cached = bootTimes.get(procRoot);
  if (cached !== undefined) return cached;
  const buf = readProcFile(`${procRoot}/uptime`);
  const uptimeSec = isReadFailure(buf) ? 0 : Number.parseFloat(buf.toString('latin1'));
  const bootMs = Date.now() - (Number.isFinite(uptimeSec) ? uptimeSec : 0) * 1000;
  const micros = Math.round(bootMs / 10) * 10 * 1000;
  bootTimes.set(procRoot, micros);
  return micros;
}

let clockTicks: number | undefined;

/** USER_HZ: 100 on every mainstream Linux, asked of getconf once in case this one differs. */
export function readClockTicks(): number {
  if (clockTicks !== undefined) return clockTicks;
  clockTicks = 100;
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000 }).trim());
    if (Number.isInteger(n) && n > 0) clockTicks = n;
  } catch {
    // No getconf (minimal images): Linux's USER_HZ is 100 on all architectures that matter.
  }
  return clockTicks;
}
