import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { ingestBatch, rederiveHost } from '../../src/ingest/index.js';
import type { PofrRecord } from '../../src/protocol/index.js';
import { findEndpoints, timeline } from '../../src/query/index.js';
import { LiveState, TracefsSource } from '../../src/recorder/index.js';
import { createTestStore } from '../helpers/store-dialects.js';
import { addHost } from '../ingest/host-fixture.js';

const ROOT = process.getuid?.() === 0;
const needsRoot = { skip: ROOT ? false : 'kernel tracing and uprobes need root' };
const TRACEFS = '/sys/kernel/tracing';

function uprobeText(): string {
  return existsSync(`${TRACEFS}/uprobe_events`) ? readFileSync(`${TRACEFS}/uprobe_events`, 'latin1') : '';
}

async function run(cmd: string, args: string[]): Promise<number> {
  const child = spawn(cmd, args, { stdio: 'ignore' });
  const pid = child.pid ?? 0;
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, `${cmd} ran`);
  return pid;
}

test(
  'a name looked up before a connection shows on that endpoint and as a dns_query in the timeline',
  needsRoot,
  async () => {
    const started = TracefsSource.start({ live: new LiveState() });
    assert.ok(started.ok, started.ok ? '' : started.reason);
    const src = started.source;
    const server = createServer((s) => s.end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const name = `pofr-${process.pid}.invalid`;
    const all: PofrRecord[] = [];
    let nodePid = 0;
    try {
      assert.equal(src.health().lookups, 'on');
      let done = false;
      const work = (async () => {
        // getent exits 2 for a name that does not resolve.
        await run('/bin/sh', ['-c', `getent ahosts ${name} || true`]);
        // Node resolves on a libuv thread (getaddrinfo), then connects from the process.
        nodePid = await run(process.execPath, [
          '-e',
          `require('net').connect(${port}, 'localhost').on('connect', function () { this.end(); }).on('close', () => process.exit(0))`,
        ]);
      })().finally(() => {
        done = true;
      });
      while (!done) {
        for (const r of src.poll(Date.now() * 1000)) all.push(r);
        await new Promise((r) => setTimeout(r, 20));
      }
      await work;
      const deadline = Date.now() + 20_000;
      while (!all.some((r) => r.type === 'process_exit' && r.pid === nodePid) && Date.now() < deadline) {
        for (const r of src.poll(Date.now() * 1000)) all.push(r);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      src.close();
      server.close();
    }
    assert.ok(!uprobeText().includes(src.health().instance), 'the probes are removed');
    const queries = all.filter((r) => r.type === 'dns_query');
    assert.ok(
      queries.some((q) => q.name === name && q.func === 'getaddrinfo'),
      `getent's lookup is recorded: ${JSON.stringify(queries)}`,
    );
    assert.ok(
      queries.some((q) => q.name === 'localhost' && q.pid === nodePid),
      "node's lookup, with its pid",
    );

    const ts = await createTestStore('sqlite');
    assert.ok(ts);
    try {
      const host = await addHost(ts.store);
      const r = await ingestBatch(ts.store, host.next(all).bytes, { principal: host.hostId });
      assert.equal(r.status, 'accepted', JSON.stringify(r));
      const eps = await findEndpoints(ts.store, { pid: nodePid, port });
      const out = eps.find((e) => e.remote_port === port);
      assert.ok(out, 'the connection is recorded');
      assert.equal(out.looked_up, 'localhost');
      const events = await timeline(ts.store, { kinds: ['dns_query'] });
      const lookup = events.find((e) => e.kind === 'dns_query' && e.name === name);
      assert.ok(lookup && lookup.kind === 'dns_query', 'the lookup is in the timeline');
      assert.equal(lookup.comm, 'getent');
      assert.match(lookup.summary, /looked up/);
      assert.deepEqual((await rederiveHost(ts.store, host.hostId)).mismatches, []);
    } finally {
      await ts.cleanup();
    }
  },
);
