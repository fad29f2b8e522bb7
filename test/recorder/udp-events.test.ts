import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { PofrRecord } from '../../src/protocol/index.js';
import { LiveState, TracefsSource } from '../../src/recorder/index.js';

const ROOT = process.getuid?.() === 0;
const skip = !ROOT
  ? 'kernel tracing and uprobes need root'
  : !existsSync('/bin/bash')
    ? 'bash is not installed'
    : false;
const TRACEFS = '/sys/kernel/tracing';

test('a UDP datagram sent by a process of a few milliseconds comes back with its pid', { skip }, async () => {
  const started = TracefsSource.start({ live: new LiveState(), tcp: false });
  assert.ok(started.ok, started.ok ? '' : started.reason);
  const src = started.source;
  const server = createSocket('udp4');
  server.bind(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  const got = once(server, 'message');
  const all: PofrRecord[] = [];
  let pid = 0;
  try {
    assert.equal(src.health().udp, 'on');
    // bash's /dev/udp: socket(AF_INET, SOCK_DGRAM), connect, write, close, exit — a few ms in all.
    const child = spawn('/bin/bash', ['-c', `echo pofr > /dev/udp/127.0.0.1/${port}`]);
    pid = child.pid ?? 0;
    let done = false;
    const exited = once(child, 'exit').finally(() => {
      done = true;
    });
    while (!done) {
      for (const r of src.poll(Date.now() * 1000)) all.push(r);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await exited)[0], 0);
    await got;
    for (let i = 0; i < 10 && !all.some((r) => r.type === 'endpoint_close'); i++) {
      for (const r of src.poll(Date.now() * 1000)) all.push(r);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    src.close();
    server.close();
  }
  assert.ok(
    !readFileSync(`${TRACEFS}/uprobe_events`, 'latin1').includes(src.health().instance),
    'probes removed',
  );
  const open = all.find(
    (r) => r.type === 'endpoint_open' && r.endpoint.proto === 'udp' && r.endpoint.remote_port === port,
  );
  assert.ok(open && open.type === 'endpoint_open', 'the UDP endpoint is recorded');
  assert.equal(open.endpoint.pid, pid);
  assert.equal(open.endpoint.remote_ip, '127.0.0.1');
  assert.equal(open.endpoint.family, 4);
  assert.ok(
    all.some((r) => r.type === 'endpoint_close' && r.key === open.endpoint.key && r.t >= open.t),
    'and its close',
  );
});
