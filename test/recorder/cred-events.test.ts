import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import type { PofrRecord } from '../../src/protocol/index.js';
import { applyCall } from '../../src/recorder/cred-events.js';
import { LiveState, TracefsSource } from '../../src/recorder/index.js';

const ROOT = process.getuid?.() === 0;
const root = { ruid: 0, euid: 0, rgid: 0, egid: 0 };
const user = { ruid: 1000, euid: 1000, rgid: 1000, egid: 1000 };

test('the ids after a call follow the kernel: -1 keeps an id, setuid by root sets the real id too', () => {
  assert.deepEqual(applyCall(root, 'setuid', [33]), { ...root, ruid: 33, euid: 33 });
  assert.deepEqual(applyCall(user, 'setuid', [0]), { ...user, euid: 0 }, 'a set-user-ID program going back');
  assert.deepEqual(applyCall(root, 'setresuid', [0xffff_ffff, 65534, 0xffff_ffff]), { ...root, euid: 65534 });
  assert.deepEqual(applyCall(root, 'setreuid', [5, 0xffff_ffff]), { ...root, ruid: 5 });
  assert.deepEqual(applyCall(root, 'setgid', [65534]), { ...root, rgid: 65534, egid: 65534 });
  assert.deepEqual(applyCall(root, 'setresgid', [7, 8, 9]), { ...root, rgid: 7, egid: 8 });
  assert.deepEqual(applyCall(user, 'setregid', [0xffff_ffff, 4]), { ...user, egid: 4 });
});

const python = spawnSync('python3', ['-c', 'print(1)']).status === 0;
const skip = !ROOT ? 'kernel tracing needs root' : !python ? 'python3 is not installed' : false;

test('a process dropping privileges without exec is recorded with its old and new ids', {
  skip,
}, async () => {
  const started = TracefsSource.start({ live: new LiveState(), tcp: false });
  assert.ok(started.ok, started.ok ? '' : started.reason);
  const src = started.source;
  const all: PofrRecord[] = [];
  let pid = 0;
  try {
    const child = spawn('python3', [
      '-c',
      'import os, time; os.setgid(65534); os.setuid(65534); time.sleep(0.2)',
    ]);
    let done = false;
    const exited = once(child, 'exit').finally(() => {
      done = true;
    });
    while (!done) {
      for (const r of src.poll(Date.now() * 1000)) all.push(r);
      await new Promise((r) => setTimeout(r, 20));
    }
    const [code] = await exited;
    assert.equal(code, 0);
    pid = child.pid ?? 0;
    for (let i = 0; i < 10; i++) {
      for (const r of src.poll(Date.now() * 1000)) all.push(r);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    src.close();
  }
  // python3 may be a shim that execs the interpreter: the change is the python process's.
  const changes = all.filter((r) => r.type === 'cred_change');
  const gid = changes.find((r) => r.type === 'cred_change' && r.call === 'setgid');
  const uid = changes.find((r) => r.type === 'cred_change' && r.call === 'setuid');
  assert.ok(gid && gid.type === 'cred_change', JSON.stringify(changes));
  assert.ok(uid && uid.type === 'cred_change');
  assert.equal(uid.pid, pid);
  assert.deepEqual(gid.old, root);
  assert.deepEqual(gid.new, { ...root, rgid: 65534, egid: 65534 });
  assert.deepEqual(uid.old, { ...root, rgid: 65534, egid: 65534 });
  assert.deepEqual(uid.new, { ruid: 65534, euid: 65534, rgid: 65534, egid: 65534 });
  assert.equal(changes.length, 2, 'one record per change, however many threads made the call');
});
