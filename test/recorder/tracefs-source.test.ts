import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { PofrRecord } from '../../src/protocol/index.js';
import { LiveState, Recorder, TracefsSource } from '../../src/recorder/index.js';
import { argvProbeArgs } from '../../src/recorder/sources/tracefs/argv-probe.js';
import { readElfEntry } from '../../src/recorder/sources/tracefs/elf-file.js';
import { addUprobe, removeUprobe } from '../../src/recorder/sources/tracefs/uprobe-events.js';
import { cannotRunAsNobody, runNodeAsNobody } from '../helpers/run-as-nobody.js';
import { WholeRecords } from '../helpers/whole-records.js';

/** The tracefs source against the real kernel: its instance, its probes, their cleanup, its losses. */
const ROOT = process.getuid?.() === 0;
const needsRoot = { skip: ROOT ? false : 'kernel tracing needs root' };
const TRACEFS = '/sys/kernel/tracing';

function instances(): string[] {
  return existsSync(`${TRACEFS}/instances`) ? readdirSync(`${TRACEFS}/instances`) : [];
}
function uprobeText(): string {
  return existsSync(`${TRACEFS}/uprobe_events`) ? readFileSync(`${TRACEFS}/uprobe_events`, 'latin1') : '';
}

/** Each started source's records, made whole (execs as whole images) from the state it started with. */
const wholeOf = new WeakMap<TracefsSource, WholeRecords>();

function start(opts: Partial<Parameters<typeof TracefsSource.start>[0]> = {}): TracefsSource {
  const live = opts.live ?? new LiveState();
  const started = TracefsSource.start({ ...opts, live });
  assert.ok(started.ok, started.ok ? '' : started.reason);
  wholeOf.set(started.source, new WholeRecords(live));
  return started.source;
}

/** Polls until `done(records so far)` or the deadline; the kernel's events arrive within a drain. */
async function pollUntil(src: TracefsSource, done: (all: PofrRecord[]) => boolean): Promise<PofrRecord[]> {
  const all: PofrRecord[] = [];
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const polled = src.poll(Date.now() * 1000);
    for (const r of wholeOf.get(src)?.expand(polled) ?? polled) all.push(r);
    if (done(all)) return all;
    await new Promise((r) => setTimeout(r, 50));
  }
  return all;
}

test(
  'a source makes an instance and probes of its own, records execs from them, and removes both',
  needsRoot,
  async () => {
    const src = start();
    const h = src.health();
    try {
      assert.ok(instances().includes(h.instance), 'its instance exists');
      assert.equal(h.uprobes, 'on');
      assert.ok(h.interpreters.length >= 1, 'the host ld.so is probed');
      assert.ok(uprobeText().includes(`p:${h.instance}/`), 'its probes carry its name');
      const tag = `pofr-src-${process.pid}`;
      execFileSync('/bin/sh', ['-c', `/bin/true ${tag} "a b"`]);
      const all = await pollUntil(src, (rs) =>
        rs.some(
          (r) => r.type === 'process_exec' && r.proc.argv.includes(tag) && r.proc.exe === '/usr/bin/true',
        ),
      );
      const execd = all.find((r) => r.type === 'process_exec' && r.proc.argv.includes(tag));
      assert.ok(execd && execd.type === 'process_exec', 'the exec of /bin/true is recorded');
      assert.deepEqual(execd.proc.argv, ['/bin/true', tag, 'a b']);
      assert.equal(execd.proc.argv_source, 'probe');
      assert.ok(
        all.some((r) => r.type === 'process_exit' && r.pid === execd.proc.pid),
        'and its exit',
      );
    } finally {
      src.close();
    }
    assert.ok(!instances().includes(h.instance), 'the instance is removed');
    assert.ok(!uprobeText().includes(h.instance), 'the probes are removed');
    src.close();
  },
);

test('tracing left by a dead recorder is removed at start; a live one is left alone', needsRoot, () => {
  const alive = start();
  // A pid that just exited stands for a recorder killed with SIGKILL.
  const dead = spawnSync('/bin/true').pid;
  const stale = `pofr_${dead}_1_0`;
  const ld = '/lib64/ld-linux-x86-64.so.2';
  const entry = readElfEntry(ld);
  assert.ok(entry?.entryOffset);
  try {
    mkdirSync(`${TRACEFS}/instances/${stale}`);
    addUprobe(TRACEFS, {
      group: stale,
      event: `${stale}_argv0`,
      path: ld,
      offset: entry.entryOffset,
      args: argvProbeArgs(),
    });
    const second = start();
    try {
      assert.ok(!instances().includes(stale), 'the dead owner instance is gone');
      assert.ok(!uprobeText().includes(stale), 'and its probe');
      assert.ok(instances().includes(alive.health().instance), 'the live recorder keeps its own');
      assert.ok(uprobeText().includes(alive.health().instance), 'and its probes');
    } finally {
      second.close();
    }
  } finally {
    alive.close();
    // In case the cleanup under test failed: leave nothing behind either way.
    removeUprobe(TRACEFS, stale, `${stale}_argv0`);
    if (instances().includes(stale)) execFileSync('rmdir', [`${TRACEFS}/instances/${stale}`]);
  }
});

test("a container's own ld.so gets a probe of its own once one of its programs runs", needsRoot, async () => {
  // A root of its own with copies of sh, sleep, true and their libraries: another ld.so file
  // (another inode), as a container image brings.
  const root = mkdtempSync(join(tmpdir(), 'pofr-chroot-'));
  const src = start();
  try {
    for (const dir of ['bin', 'lib64', 'lib/x86_64-linux-gnu'])
      mkdirSync(join(root, dir), { recursive: true });
    for (const f of ['/bin/sh', '/bin/sleep', '/usr/bin/true'])
      copyFileSync(f, join(root, 'bin', f.split('/').pop()!));
    copyFileSync('/lib64/ld-linux-x86-64.so.2', join(root, 'lib64/ld-linux-x86-64.so.2'));
    copyFileSync('/lib/x86_64-linux-gnu/libc.so.6', join(root, 'lib/x86_64-linux-gnu/libc.so.6'));
    const before = src.health().interpreters.length;
    const tag = `pofr-chroot-${process.pid}`;
    // sh lives long enough to be looked at: its exec teaches the source this root's ld.so; the
    // true it runs two seconds later (time enough on a loaded machine) is read by the new probe.
    // Run beside the polls, as the recorder runs beside what it records.
    const child = spawn('chroot', [root, '/bin/sh', '-c', `/bin/sleep 2; /bin/true ${tag}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = once(child, 'exit');
    const all = await pollUntil(src, (rs) =>
      rs.some((r) => r.type === 'process_exec' && r.proc.argv.includes(tag)),
    );
    assert.deepEqual(await exited, [0, null], stderr);
    const execd = all.find((r) => r.type === 'process_exec' && r.proc.argv.includes(tag));
    assert.ok(execd && execd.type === 'process_exec', 'the program run in the chroot is recorded');
    assert.deepEqual(execd.proc.argv, ['/bin/true', tag]);
    assert.equal(execd.proc.argv_source, 'probe', 'the chroot ld.so is probed');
    // Other roots may be probed meanwhile (the suite runs tests side by side, some in chroots).
    const added = src.health().interpreters.slice(before);
    assert.ok(
      added.some((p) => /^\/proc\/\d+\/root\/lib64\/ld-linux-x86-64\.so\.2$/.test(p)),
      `an ld.so inside a process's root is probed: ${JSON.stringify(added)}`,
    );
  } finally {
    src.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('a burst larger than the kernel buffer becomes a gap record with its count', needsRoot, async () => {
  // 16 KiB per CPU holds a handful of argv probe hits; 300 execs between two drains overrun it.
  const src = start({ bufferKbPerCpu: 16 });
  try {
    execFileSync('/bin/sh', ['-c', 'for i in $(seq 1 300); do /bin/true overrun-$i; done']);
    const all = await pollUntil(src, (rs) => rs.some((r) => r.type === 'gap'));
    const gap = all.find((r) => r.type === 'gap');
    assert.ok(gap && gap.type === 'gap', 'the loss is a gap record');
    assert.match(gap.reason, /lost events/);
    assert.ok((gap.dropped ?? 0) > 0, 'with the number of events lost');
    assert.ok(gap.from <= gap.to);
    assert.ok(src.health().lost > 0);
    assert.equal(src.takeReconcile(), true, 'and asks the sampler to check everything against /proc');
    assert.equal(src.takeReconcile(), false, 'once');
  } finally {
    src.close();
  }
});

test('without tracefs the source says why, and the recorder samples /proc alone', async () => {
  const missing = TracefsSource.start({ live: new LiveState(), tracefsRoots: ['/nonexistent/tracing'] });
  assert.equal(missing.ok, false);
  assert.match(missing.ok ? '' : missing.reason, ROOT ? /\/nonexistent\/tracing does not exist/ : /not root/);
  const logs: string[] = [];
  const recorder = Recorder.start({
    intervalMs: 200,
    tracefsRoots: ['/nonexistent/tracing'],
    log: (msg) => logs.push(msg),
  });
  try {
    assert.equal(recorder.modes.tracefs, 'unavailable');
    assert.equal(recorder.trace, null);
    assert.deepEqual(logs, ['kernel tracing unavailable: recording by sampling /proc alone'], 'said once');
    const health = recorder.health().tracefs as { mode: string; reason: string };
    assert.equal(health.mode, 'unavailable');
    assert.ok(health.reason.length > 0);
    const first = recorder.tick(Date.now());
    assert.ok(
      first.some((r) => r.type === 'keyframe'),
      'the sampler records',
    );
    assert.equal(recorder.tickMs, 200, 'at its own interval');
  } finally {
    recorder.stop(Date.now());
  }
});

test('not root, the source says so', { skip: cannotRunAsNobody() }, () => {
  const r = runNodeAsNobody('dist/test/helpers/tracefs-start.js', [], { timeoutMs: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; reason?: string };
  assert.equal(out.ok, false);
  assert.match(out.reason ?? '', /not root \(uid 65534\)/);
});

test('in a PID namespace of its own the source refuses, and touches no other recorder', needsRoot, () => {
  const alive = start();
  try {
    const helper = fileURLToPath(new URL('../helpers/tracefs-start.js', import.meta.url));
    const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, helper], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { ok: boolean; reason?: string };
    assert.equal(out.ok, false);
    assert.match(out.reason ?? '', /PID namespace of its own/);
    // Inside the namespace every other recorder would have looked dead: none was cleaned.
    assert.ok(instances().includes(alive.health().instance));
    assert.ok(
      !instances().some((n) => n !== alive.health().instance && /^pofr_1_/.test(n)),
      'its own is gone',
    );
  } finally {
    alive.close();
  }
});
