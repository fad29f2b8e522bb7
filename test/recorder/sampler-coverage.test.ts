import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import type { PofrRecord } from '../../src/protocol/index.js';
import { type EventCoverage, ProcfsSampler, parseSources } from '../../src/recorder/index.js';
import { readElfEntry } from '../../src/recorder/sources/tracefs/elf-file.js';

/** A stand-in for the tracefs source, so the sampler's side of the contract is tested on real /proc. */
class FakeEvents implements EventCoverage {
  processes = true;
  tcp = true;
  lost = false;
  /** What takeFdChanges hands out next; null: the source does not see open and close calls. */
  fdChanges: Set<number> | null = null;
  covers() {
    return { processes: this.processes, tcp: this.tcp };
  }
  takeReconcile() {
    const r = this.lost;
    this.lost = false;
    return r;
  }
  takeFdChanges() {
    const c = this.fdChanges;
    if (c !== null) this.fdChanges = new Set();
    return c;
  }
}

const starts = (rs: PofrRecord[], pid: number) =>
  rs.filter((r) => (r.type === 'process_start' || r.type === 'process_exec') && r.proc.pid === pid);

test('while events cover processes the sampler leaves them alone, and checks them against /proc after a loss', async () => {
  const events = new FakeEvents();
  const sampler = new ProcfsSampler({ events, keyframeEveryMs: 3_600_000 });
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 100));
    let t = Date.now() * 1000;
    const betweens: number[] = [];
    sampler.poll(t, () => betweens.push(1));
    // A process the events did not report (as if they had missed it): covered cycles do not look.
    const late = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      t += 1_000_000;
      const covered = sampler.poll(t, () => betweens.push(2));
      assert.deepEqual(starts(covered, late.pid!), [], 'no /proc listing while events cover processes');
      assert.deepEqual(betweens, [1, 2], 'the event source drains once every cycle');
      // The events lost some: the next cycle lists /proc and records what they missed.
      events.lost = true;
      t += 1_000_000;
      const reconciled = sampler.poll(t);
      assert.equal(starts(reconciled, late.pid!).length, 1, 'found by the reconciling cycle');
      // What the events' live state holds stays as the events said.
      assert.ok(sampler.live.processes.size > 0);
      // And once events stop covering (the source stopped), sampling takes over fully.
      events.processes = false;
      late.kill('SIGKILL');
      await once(late, 'exit');
      t += 1_000_000;
      const sampled = sampler.poll(t);
      assert.ok(
        sampled.some((r) => r.type === 'process_exit' && r.pid === late.pid),
        'the sampler ends processes again itself',
      );
    } finally {
      late.kill('SIGKILL');
    }
  } finally {
    child.kill('SIGKILL');
    sampler.close();
  }
});

test('with open and close calls reported, a process that made none waits for the slower round; one that did is read at once', async () => {
  const events = new FakeEvents();
  events.fdChanges = new Set();
  const sampler = new ProcfsSampler({ events, keyframeEveryMs: 3_600_000 });
  // Opens a file each time it gets SIGUSR1 and keeps it open.
  const opener = spawn(
    'python3',
    [
      '-c',
      "import signal,time\nfs=[]\nsignal.signal(signal.SIGUSR1, lambda *a: fs.append(open('/etc/hostname')))\nprint('ready', flush=True)\ntime.sleep(60)",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const opens = (rs: PofrRecord[]) =>
    rs.filter((r) => r.type === 'file_open' && r.file.pid === opener.pid && r.file.path === '/etc/hostname');
  const openOne = async () => {
    const before = readdirSync(`/proc/${opener.pid}/fd`).length;
    opener.kill('SIGUSR1');
    while (readdirSync(`/proc/${opener.pid}/fd`).length === before)
      await new Promise((r) => setTimeout(r, 10));
  };
  try {
    await once(opener.stdout!, 'data');
    let t = Date.now() * 1000;
    sampler.poll(t); // the first keyframe: the opener is known from here on
    t += 100_000;
    sampler.poll(t); // its first covered visit
    await openOne();
    t += 100_000;
    assert.deepEqual(opens(sampler.poll(t)), [], 'no open call reported: not looked at within the second');
    events.fdChanges.add(opener.pid!);
    t += 100_000;
    assert.equal(opens(sampler.poll(t)).length, 1, 'an open call reported: its fd table is read at once');
    await openOne();
    t += 100_000;
    assert.deepEqual(opens(sampler.poll(t)), [], 'within a second of its last look');
    t += 1_000_000;
    assert.equal(opens(sampler.poll(t)).length, 1, 'the slower round finds what came without an open call');
  } finally {
    opener.kill('SIGKILL');
    sampler.close();
  }
});

test('--sources takes tracefs, uprobes and procfs; procfs cannot be left out', () => {
  assert.deepEqual(parseSources('tracefs,uprobes,procfs'), { tracefs: true, uprobes: true });
  assert.deepEqual(parseSources('procfs'), { tracefs: false, uprobes: false });
  assert.deepEqual(parseSources(' procfs , tracefs '), { tracefs: true, uprobes: false });
  assert.match(String(parseSources('tracefs')), /procfs cannot be left out/);
  assert.match(String(parseSources('uprobes,procfs')), /uprobes need tracefs/);
  assert.match(String(parseSources('procfs,ebpf')), /unknown source ebpf/);
});

test('the ELF reader finds a dynamic program interpreter and an interpreter entry as a file offset', () => {
  const prog = readElfEntry('/bin/true');
  assert.ok(prog);
  assert.equal(prog.supported, true);
  assert.match(String(prog.interpreter), /^\/lib.*ld-linux.*\.so\.\d$/);
  const ld = readElfEntry(String(prog.interpreter));
  assert.ok(ld);
  assert.equal(ld.interpreter, null, 'the interpreter needs none');
  assert.ok(typeof ld.entryOffset === 'number' && ld.entryOffset > 0);
  // binutils, where installed, reads the same entry (ld.so's text maps at file offset = address).
  try {
    const text = execFileSync('readelf', ['-h', String(prog.interpreter)], { encoding: 'utf8' });
    const entry = Number(/Entry point address:\s+(0x[0-9a-f]+)/.exec(text)?.[1]);
    assert.equal(ld.entryOffset, entry);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  assert.equal(readElfEntry('/etc/passwd'), null, 'not ELF');
  assert.equal(readElfEntry('/nonexistent'), null);
});
