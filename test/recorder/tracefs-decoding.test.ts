import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { argvProbeFormat } from '../../src/recorder/sources/tracefs/argv-probe.js';
import {
  type EventFormat,
  parseEventFormat,
  readIntField,
} from '../../src/recorder/sources/tracefs/event-format.js';
import { EventDecoder, type KernelEvent } from '../../src/recorder/sources/tracefs/kernel-events.js';
import { readSubbuffer } from '../../src/recorder/sources/tracefs/ring-buffer-page.js';

/**
 * The binary side of the tracefs source without a kernel: event layouts from format files this
 * kernel kind wrote (test/fixtures/tracefs), records and ring-buffer pages built byte by byte here.
 */
const FIXTURES = new URL('../../../test/fixtures/tracefs/', import.meta.url);

function fixture(name: string, system: string): EventFormat {
  return parseEventFormat(system, readFileSync(new URL(`${name}.format`, FIXTURES), 'latin1'));
}

const exec = fixture('sched-sched_process_exec', 'sched');
const exit = fixture('sched-sched_process_exit', 'sched');
const fork = fixture('sched-sched_process_fork', 'sched');
const newtask = fixture('task-task_newtask', 'task');
const tcp = fixture('sock-inet_sock_set_state', 'sock');
const marker = fixture('ftrace-print', 'ftrace');
const argv = fixture('uprobe-argv', 'pofr_test');

type Value = number | bigint | Buffer;

/** One record of `format`: fixed fields as given, dynamic (__data_loc) ones appended after them. */
function record(
  format: EventFormat,
  values: Record<string, Value>,
  common: Record<string, number> = {},
): Buffer {
  let fixedEnd = 0;
  for (const f of format.fields.values()) fixedEnd = Math.max(fixedEnd, f.offset + f.size);
  const dynamic: Buffer[] = [];
  let dynAt = fixedEnd;
  const fixed = Buffer.alloc(fixedEnd);
  fixed.writeUInt16LE(format.id, 0);
  fixed.writeUInt8(common.flags ?? 0, 2);
  fixed.writeInt32LE(common.pid ?? 0, 4);
  for (const [name, v] of Object.entries(values)) {
    const f = format.fields.get(name);
    assert.ok(f, `${format.name} has no field ${name}`);
    if (f.dataLoc) {
      const bytes = Buffer.isBuffer(v) ? v : Buffer.from(String(v));
      fixed.writeUInt32LE(((bytes.length << 16) | dynAt) >>> 0, f.offset);
      dynamic.push(bytes);
      dynAt += bytes.length;
    } else if (Buffer.isBuffer(v) && f.size === 0) {
      // A trailing char[] (ftrace:print's buf) runs to the record's end.
      dynamic.push(v);
      dynAt += v.length;
    } else if (Buffer.isBuffer(v)) {
      v.copy(fixed, f.offset, 0, Math.min(v.length, f.size));
    } else if (f.size === 8) {
      fixed.writeBigUInt64LE(BigInt(v), f.offset);
    } else if (f.size === 4) {
      if (f.signed) fixed.writeInt32LE(Number(v), f.offset);
      else fixed.writeUInt32LE(Number(v), f.offset);
    } else if (f.size === 2) {
      fixed.writeUInt16LE(Number(v), f.offset);
    } else if (f.size === 1) {
      fixed.writeUInt8(Number(v), f.offset);
    }
  }
  return Buffer.concat([fixed, ...dynamic]);
}

const cstr = (s: string | Buffer) =>
  Buffer.concat([Buffer.isBuffer(s) ? s : Buffer.from(s), Buffer.from([0])]);

interface PageEvent {
  readonly delta: number;
  readonly payload?: Buffer;
  /** A padding (discarded) event of this many bytes instead of a record. */
  readonly padding?: number;
}

/** A ring-buffer sub-buffer as trace_pipe_raw hands it out (64-bit layout of header_page). */
function page(timestamp: bigint, events: readonly PageEvent[], lost?: number): Buffer {
  const parts: Buffer[] = [];
  for (const e of events) {
    let delta = e.delta;
    if (delta >= 2 ** 27) {
      // A time extend carries the high bits of a delta too large for an event header.
      const ext = Buffer.alloc(8);
      ext.writeUInt32LE(((delta % 2 ** 27) * 32 + 30) >>> 0, 0);
      ext.writeUInt32LE(Math.floor(delta / 2 ** 27), 4);
      parts.push(ext);
      delta = 0;
    }
    if (e.padding !== undefined) {
      const pad = Buffer.alloc(8 + e.padding);
      pad.writeUInt32LE(((1 << 5) | 29) >>> 0, 0);
      pad.writeUInt32LE(e.padding + 4, 4);
      parts.push(pad);
      continue;
    }
    const payload = e.payload!;
    const padded = Buffer.concat([payload, Buffer.alloc((4 - (payload.length % 4)) % 4)]);
    if (padded.length <= 28 * 4) {
      const head = Buffer.alloc(4);
      head.writeUInt32LE(((delta << 5) | (padded.length / 4)) >>> 0, 0);
      parts.push(head, padded);
    } else {
      const head = Buffer.alloc(8);
      head.writeUInt32LE((delta << 5) >>> 0, 0);
      head.writeUInt32LE(payload.length + 4, 4);
      parts.push(head, padded);
    }
  }
  const data = Buffer.concat(parts);
  const header = Buffer.alloc(16);
  header.writeBigUInt64LE(timestamp, 0);
  let commit = BigInt(data.length);
  if (lost !== undefined) commit |= 0xc000_0000n;
  header.writeBigUInt64LE(commit, 8);
  const tail = Buffer.alloc(8);
  if (lost !== undefined) tail.writeBigUInt64LE(BigInt(lost), 0);
  return Buffer.concat([header, data, tail, Buffer.alloc(64)]);
}

function decodeAll(decoder: EventDecoder, pageBuf: Buffer): KernelEvent[] {
  const out: KernelEvent[] = [];
  readSubbuffer(pageBuf, pageBuf.length, (ts, offset, length) => {
    const ev = decoder.decode(ts, pageBuf, offset, length);
    if (ev) out.push(ev);
  });
  return out;
}

test('format files give each field its offset, size, sign and dynamic kind', () => {
  assert.equal(exec.name, 'sched_process_exec');
  assert.ok(exec.id > 0);
  assert.deepEqual(
    { ...exec.fields.get('filename') },
    { name: 'filename', offset: 8, size: 4, signed: false, dataLoc: true, relLoc: false },
  );
  assert.equal(exec.fields.get('pid')?.signed, true);
  assert.equal(exit.fields.get('comm')?.size, 16);
  assert.equal(newtask.fields.get('clone_flags')?.size, 8);
  assert.equal(marker.fields.get('buf')?.size, 0);
  assert.throws(() => parseEventFormat('x', 'nothing here'), /not a trace event format/);
});

test('8-byte fields read as Number(BigInt) would: negative returns, pointers, values past 2^53', () => {
  const b = Buffer.alloc(8);
  const field = (signed: boolean) => ({
    name: 'v',
    offset: 0,
    size: 8,
    signed,
    dataLoc: false,
    relLoc: false,
  });
  const values = [
    0n,
    3n,
    -2n,
    -100n,
    0x7ffd_1234_5678n,
    2n ** 53n + 1n,
    2n ** 63n - 1n,
    -(2n ** 63n),
    -(2n ** 40n) + 7n,
  ];
  for (const v of values) {
    b.writeBigInt64LE(v);
    assert.equal(readIntField(b, 0, field(true)), Number(v), `signed ${v}`);
    assert.equal(readIntField(b, 0, field(false)), Number(b.readBigUInt64LE(0)), `unsigned ${v}`);
  }
});

test('a sub-buffer yields its records in order with their times, through time extends and padding', () => {
  const base = 5_000_000_000n;
  const a = Buffer.from('aaaa');
  const big = Buffer.alloc(200, 0x62);
  const pg = page(base, [
    { delta: 10, payload: a },
    { delta: 0, padding: 12 },
    { delta: 2 ** 28 + 7, payload: big },
    { delta: 3, payload: Buffer.from('cc') },
  ]);
  const seen: [number, string][] = [];
  const info = readSubbuffer(pg, pg.length, (ts, offset, length) => {
    seen.push([ts, pg.subarray(offset, offset + Math.min(length, 4)).toString('latin1')]);
  });
  assert.deepEqual(seen, [
    [5_000_000_010, 'aaaa'],
    [5_000_000_010 + 2 ** 28 + 7, 'bbbb'],
    [5_000_000_010 + 2 ** 28 + 10, 'cc\0\0'],
  ]);
  assert.equal(info.lostBefore, 0);
  assert.equal(info.timestamp, 5_000_000_000);
});

test('a sub-buffer says how many events were lost before it', () => {
  const pg = page(1n, [{ delta: 1, payload: Buffer.from('abcd') }], 42);
  assert.equal(readSubbuffer(pg, pg.length, () => {}).lostBefore, 42);
});

test('a truncated sub-buffer ends the walk instead of reading past it', () => {
  const pg = page(1n, [{ delta: 1, payload: Buffer.alloc(300, 1) }]);
  let n = 0;
  readSubbuffer(pg, 40, () => n++);
  assert.equal(n, 0);
});

test('exec, exit, new task and fork records decode, file names as exact bytes', () => {
  const decoder = new EventDecoder({ exec, exit, newtask, fork, tcp, marker });
  const hostile = Buffer.concat([Buffer.from("/tmp/it's\n"), Buffer.from([0xff, 0xfe]), Buffer.from('.sh')]);
  const pg = page(100n, [
    { delta: 1, payload: record(exec, { filename: cstr(hostile), pid: 4242, old_pid: 4243 }) },
    {
      delta: 1,
      payload: record(newtask, { pid: 77, comm: Buffer.from('worker'), clone_flags: 0x10f00n }, { pid: 70 }),
    },
    {
      delta: 1,
      payload: record(newtask, { pid: 78, comm: Buffer.from('bash'), clone_flags: 0x1200011n }, { pid: 70 }),
    },
    {
      delta: 1,
      payload: record(fork, {
        parent_comm: cstr('bash'),
        parent_pid: 70,
        child_comm: cstr('bash'),
        child_pid: 79,
      }),
    },
    { delta: 1, payload: record(exit, { comm: Buffer.from('true'), pid: 4242, prio: 120, group_dead: 1 }) },
  ]);
  const [ex, thread, proc, forked, gone] = decodeAll(decoder, pg);
  assert.deepEqual(ex, { kind: 'exec', ts: 101, pid: 4242, oldPid: 4243, filename: hostile });
  assert.deepEqual(thread, {
    kind: 'task',
    ts: 102,
    tid: 77,
    parentTid: 70,
    comm: Buffer.from('worker'),
    thread: true,
    newNamespaces: false,
  });
  assert.equal(proc.kind === 'task' && proc.thread, false);
  assert.deepEqual(forked, {
    kind: 'task',
    ts: 104,
    tid: 79,
    parentTid: 70,
    comm: Buffer.from('bash'),
    thread: null,
    newNamespaces: null,
  });
  assert.deepEqual(gone, { kind: 'exit', ts: 105, tid: 4242, comm: Buffer.from('true'), groupDead: true });
});

test('TCP state changes decode with both address families; other protocols are left out', () => {
  const decoder = new EventDecoder({ exec, exit, newtask, tcp });
  const v4 = record(
    tcp,
    {
      skaddr: 0xffff888100d59bc0n,
      oldstate: 7,
      newstate: 2,
      sport: 0,
      dport: 443,
      family: 2,
      protocol: 6,
      saddr: Buffer.from([10, 0, 0, 5]),
      daddr: Buffer.from([93, 184, 216, 34]),
    },
    { pid: 5150 },
  );
  const v6addr = Buffer.from('20010db8000000000000000000000001', 'hex');
  const v6 = record(
    tcp,
    {
      skaddr: 1n,
      oldstate: 10,
      newstate: 3,
      sport: 8443,
      dport: 50000,
      family: 10,
      protocol: 6,
      saddr_v6: v6addr,
      daddr_v6: Buffer.from('00000000000000000000ffff7f000001', 'hex'),
    },
    { pid: 0, flags: 0x10 },
  );
  const sctp = record(tcp, { skaddr: 2n, family: 2, protocol: 132 });
  const events = decodeAll(
    decoder,
    page(0n, [
      { delta: 5, payload: v4 },
      { delta: 5, payload: v6 },
      { delta: 5, payload: sctp },
    ]),
  );
  assert.equal(events.length, 2, 'the SCTP socket is not TCP');
  assert.deepEqual(events[0], {
    kind: 'tcp',
    ts: 5,
    tid: 5150,
    interrupt: false,
    sk: 'ffff888100d59bc0',
    oldState: 7,
    newState: 2,
    family: 4,
    localIp: '10.0.0.5',
    localPort: 0,
    remoteIp: '93.184.216.34',
    remotePort: 443,
  });
  const e6 = events[1];
  assert.ok(e6.kind === 'tcp');
  assert.equal(e6.localIp, '2001:db8::1');
  assert.equal(e6.remoteIp, '::ffff:127.0.0.1');
  assert.equal(e6.interrupt, true, 'raised in softirq: its task is not the owner');
});

/** An argv probe hit as the kernel stores it: argc, the pointers argv[0..32], then the strings. */
function argvRecord(args: Buffer[], opts: { envFirst?: boolean; cut?: number } = {}): Buffer {
  const values: Record<string, Value> = { argc: args.length };
  let addr = 0x7ffd_0000_1000;
  const ptrs: number[] = [];
  for (const a of args) {
    ptrs.push(addr);
    addr += a.length + 1;
  }
  for (let i = 0; i <= 32; i++) {
    if (i < args.length) values[`p${i}`] = BigInt(ptrs[i]);
    // argv[argc] is NULL, argv[argc + 1] the first environment string (right after the last arg).
    else if (i === args.length + 1 && opts.envFirst !== false) values[`p${i}`] = BigInt(addr);
    else values[`p${i}`] = 0n;
  }
  for (let i = 0; i < Math.min(args.length, 32); i++) {
    let s = args[i];
    if (opts.cut !== undefined && i === args.length - 1) s = s.subarray(0, opts.cut);
    values[`a${i}`] = cstr(s);
  }
  return record(argv, values, { pid: 900 });
}

function decodeArgv(rec: Buffer): KernelEvent {
  const decoder = new EventDecoder({ exec, exit });
  decoder.addArgvProbe(argvProbeFormat(argv));
  const [ev] = decodeAll(decoder, page(0n, [{ delta: 1, payload: rec }]));
  return ev;
}

test('an argv probe hit gives the exact arguments, invalid UTF-8 and empty ones included', () => {
  const args = [Buffer.from('/bin/true'), Buffer.from(''), Buffer.from('a "b"\n'), Buffer.from([0xff, 0xfe])];
  const ev = decodeArgv(argvRecord(args));
  assert.ok(ev.kind === 'argv');
  assert.equal(ev.tid, 900);
  assert.equal(ev.argc, 4);
  assert.deepEqual(ev.argv, args);
  assert.equal(ev.complete, true);
});

test('an argument the kernel cut to fit is caught by the pointers, even as the last one', () => {
  const args = [Buffer.from('/bin/true'), Buffer.alloc(3000, 0x78)];
  const ev = decodeArgv(argvRecord(args, { cut: 900 }));
  assert.ok(ev.kind === 'argv');
  assert.equal(ev.complete, false);
});

test('more arguments than the probe fetches, or a string not fetched, are incomplete', () => {
  const many = Array.from({ length: 40 }, (_, i) => Buffer.from(`arg${i}`));
  const ev = decodeArgv(argvRecord(many));
  assert.ok(ev.kind === 'argv');
  assert.equal(ev.argc, 40);
  assert.equal(ev.argv.length, 32);
  assert.equal(ev.complete, false);
});

test('without an environment to bound it, only a short last argument is believed whole', () => {
  const short = decodeArgv(argvRecord([Buffer.from('env'), Buffer.from('-i')], { envFirst: false }));
  assert.ok(short.kind === 'argv' && short.complete);
  const long = decodeArgv(argvRecord([Buffer.from('x'), Buffer.alloc(2500, 0x41)], { envFirst: false }));
  assert.ok(long.kind === 'argv' && !long.complete);
});

test('trace_marker lines come back as marker events', () => {
  const decoder = new EventDecoder({ exec, exit, marker });
  const rec = record(marker, { ip: 0n, buf: cstr('pofr-clock 3\n') }, { pid: 4321 });
  const [ev] = decodeAll(decoder, page(9n, [{ delta: 1, payload: rec }]));
  assert.deepEqual(ev, { kind: 'marker', ts: 10, tid: 4321, text: 'pofr-clock 3' });
});
