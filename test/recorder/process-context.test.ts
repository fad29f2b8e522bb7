import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readlinkSync, rmdirSync } from 'node:fs';
import { test } from 'node:test';
import type { PofrRecord, ProcessImage } from '../../src/protocol/index.js';
import { LiveState, TracefsSource } from '../../src/recorder/index.js';
import { containerIdOf, pickCgroup } from '../../src/recorder/sources/process-context.js';
import { WholeRecords } from '../helpers/whole-records.js';

const ROOT = process.getuid?.() === 0;
const needsRoot = { skip: ROOT ? false : 'kernel tracing, namespaces and cgroups need root' };
const HEX = 'c0ffee'.padEnd(64, '0123456789abcdef'.repeat(4)).slice(0, 64);

test('a container id is read from docker, containerd/Kubernetes, CRI-O and podman cgroup names', () => {
  const id = HEX;
  assert.equal(containerIdOf(`/system.slice/docker-${id}.scope`), id);
  assert.equal(containerIdOf(`/docker/${id}`), id);
  assert.equal(containerIdOf(`/kubepods/burstable/pod1234-5678/${id}`), id);
  assert.equal(
    containerIdOf(
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice/cri-containerd-${id}.scope`,
    ),
    id,
  );
  assert.equal(containerIdOf(`/kubepods.slice/crio-${id}.scope`), id);
  assert.equal(containerIdOf(`/machine.slice/libpod-${id}.scope/container`), id);
  // podman's monitor (conmon) runs beside the container, not in it.
  assert.equal(containerIdOf(`/machine.slice/libpod-conmon-${id}.scope`), null);
  assert.equal(containerIdOf('/user.slice/user-1000.slice/session-2.scope'), null);
  assert.equal(containerIdOf(`/docker-${id.slice(1)}.scope`), null, 'not 64 hex digits');
  assert.equal(containerIdOf('/'), null);
});

test('the cgroup recorded is the one naming a container, else the unified one, else systemd', () => {
  const hybrid = `9:name=systemd:/user.slice\n4:memory:/docker/${HEX}\n0::/init.scope\n`;
  assert.equal(pickCgroup(hybrid), `/docker/${HEX}`);
  assert.equal(pickCgroup('9:name=systemd:/user.slice\n4:memory:/\n0::/init.scope\n'), '/init.scope');
  assert.equal(pickCgroup('9:name=systemd:/user.slice\n4:memory:/\n'), '/user.slice');
  assert.equal(pickCgroup('0::/a:b\n'), '/a:b', 'a colon inside the path stays in it');
  assert.equal(pickCgroup(''), null);
});

function nsOf(pid: number | 'self', ns: string): number {
  return Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${ns}`))?.[1]);
}

async function recordWhile(
  run: () => Promise<void>,
  found: (p: ProcessImage) => boolean,
): Promise<ProcessImage> {
  const live = new LiveState();
  const started = TracefsSource.start({ live, tcp: false });
  assert.ok(started.ok, started.ok ? '' : started.reason);
  const src = started.source;
  const whole = new WholeRecords(live);
  try {
    const all: PofrRecord[] = [];
    // Polled while the process runs: /proc is read when its exec event is processed.
    let done = false;
    const ran = run().finally(() => {
      done = true;
    });
    while (!done) {
      for (const r of whole.expand(src.poll(Date.now() * 1000))) all.push(r);
      await new Promise((r) => setTimeout(r, 20));
    }
    await ran;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      for (const r of whole.expand(src.poll(Date.now() * 1000))) all.push(r);
      const hit = all.find((r) => (r.type === 'process_exec' || r.type === 'process_start') && found(r.proc));
      if (hit && (hit.type === 'process_exec' || hit.type === 'process_start')) return hit.proc;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail('the process was not recorded');
  } finally {
    src.close();
  }
}

test(
  'a process in pid, net and mount namespaces of its own is recorded with their ids',
  needsRoot,
  async (t) => {
    if (!existsSync('/usr/bin/unshare')) return t.skip('unshare (util-linux) is not installed');
    const tag = `pofr-ns-${process.pid}`;
    const img = await recordWhile(
      async () => {
        const child = spawn('/usr/bin/unshare', [
          '--pid',
          '--net',
          '--mount',
          '--fork',
          '/bin/sh',
          '-c',
          'sleep 0.3',
          tag,
        ]);
        const [code] = await once(child, 'exit');
        assert.equal(code, 0, 'unshare ran');
      },
      (p) => p.argv[0] === '/bin/sh' && p.argv.includes(tag),
    );
    assert.ok(typeof img.ns_pid === 'number' && img.ns_pid !== nsOf('self', 'pid'), 'its own pid namespace');
    assert.ok(typeof img.ns_net === 'number' && img.ns_net !== nsOf('self', 'net'), 'its own net namespace');
    assert.ok(
      typeof img.ns_mnt === 'number' && img.ns_mnt !== nsOf('self', 'mnt'),
      'its own mount namespace',
    );
    assert.equal(img.ns_user, nsOf('self', 'user'), "the host's user namespace");
    assert.equal(img.container_id ?? null, null);
  },
);

test(
  'an exec after unshare or setns in the same process is recorded in the namespace it moved to, also under a parent whose context was known',
  needsRoot,
  async (t) => {
    if (!existsSync('/usr/bin/unshare') || !existsSync('/usr/bin/nsenter'))
      return t.skip('unshare and nsenter (util-linux) are not installed');
    // The outer shell's context is read at its exec; its children inherit it by plain forks, so their
    // execs keep it, until unshare or setns moves the process: the exec after that is read again.
    const tag = `pofr-unshare-${process.pid}`;
    const moved = await recordWhile(
      async () => {
        const child = spawn('/bin/sh', [
          '-c',
          `/bin/sleep 0.3; exec /usr/bin/unshare --net /bin/sh -c 'sleep 0.3' ${tag}`,
        ]);
        const [code] = await once(child, 'exit');
        assert.equal(code, 0, 'unshare ran');
      },
      (p) => p.argv[0] === '/bin/sh' && p.argv.includes(tag),
    );
    assert.ok(
      typeof moved.ns_net === 'number' && moved.ns_net !== nsOf('self', 'net'),
      'the net namespace unshare made',
    );
    const holder = spawn('/usr/bin/unshare', ['--net', 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const target = nsOf(holder.pid!, 'net');
      assert.notEqual(target, nsOf('self', 'net'));
      const tag2 = `pofr-setns-${process.pid}`;
      const entered = await recordWhile(
        async () => {
          const child = spawn('/bin/sh', [
            '-c',
            `/bin/sleep 0.3; exec /usr/bin/nsenter --net=/proc/${holder.pid}/ns/net /bin/sh -c 'sleep 0.3' ${tag2}`,
          ]);
          const [code] = await once(child, 'exit');
          assert.equal(code, 0, 'nsenter ran');
        },
        (p) => p.argv[0] === '/bin/sh' && p.argv.includes(tag2),
      );
      assert.equal(entered.ns_net, target, 'the net namespace setns entered');
    } finally {
      holder.kill('SIGKILL');
    }
  },
);

test(
  'a process in a cgroup named like a docker container is recorded with its id and path',
  needsRoot,
  async (t) => {
    const base = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/systemd', '/sys/fs/cgroup'].find((d) =>
      existsSync(`${d}/cgroup.procs`),
    );
    if (base === undefined) return t.skip('no writable cgroup hierarchy under /sys/fs/cgroup');
    const id = `${process.pid.toString(16)}`.padStart(8, '0').padEnd(64, 'd');
    const dir = `${base}/docker-${id}.scope`;
    mkdirSync(dir);
    try {
      const tag = `pofr-cg-${process.pid}`;
      const img = await recordWhile(
        async () => {
          // The shell joins the cgroup, then execs the program the test looks for (as runc does).
          const child = spawn('/bin/sh', [
            '-c',
            `echo $$ > ${dir}/cgroup.procs && exec /bin/sh -c 'sleep 0.3' ${tag}`,
          ]);
          const [code] = await once(child, 'exit');
          assert.equal(code, 0, 'the shell joined the cgroup');
        },
        (p) => p.argv.includes(tag),
      );
      assert.equal(img.container_id, id);
      assert.ok(
        typeof img.cgroup === 'string' && img.cgroup.endsWith(`/docker-${id}.scope`),
        String(img.cgroup),
      );
    } finally {
      rmdirSync(dir);
    }
  },
);
