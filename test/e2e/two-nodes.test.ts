import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { type Daemon, jsonLines, pofr, startPofr, waitUntil } from '../helpers/pofr-cli.js';
import { PG_URL_ENV } from '../helpers/store-dialects.js';

const CLIENTS = 3;
const adminUrl = process.env[PG_URL_ENV];
const base = mkdtempSync(join(tmpdir(), 'pofr-two-nodes-'));
const dbName = `pofr_nodes_${randomBytes(4).toString('hex')}`;
const daemons: Daemon[] = [];
const sockets = new Set<Socket>();
let balancer: Server | null = null;
let admin: pg.Client | null = null;

after(async () => {
  for (const d of daemons) await d.stop(5000);
  for (const s of sockets) s.destroy();
  balancer?.close();
  if (admin) {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
  rmSync(base, { recursive: true, force: true });
});

/**
 * A TCP balancer as HAProxy's `balance roundrobin` in `mode tcp` would be: each connection goes to
 * the next node, and to the one after when that node does not answer.
 */
function startBalancer(backends: number[]): Promise<number> {
  let next = 0;
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const tryNode = (attempt: number) => {
      if (attempt >= backends.length) {
        client.destroy();
        return;
      }
      const port = backends[next++ % backends.length] as number;
      const node = connect(port, '127.0.0.1');
      node.once('error', () => tryNode(attempt + 1));
      node.once('connect', () => {
        sockets.add(node);
        node.on('close', () => {
          sockets.delete(node);
          client.destroy();
        });
        node.on('error', () => client.destroy());
        client.on('error', () => node.destroy());
        client.on('close', () => node.destroy());
        client.pipe(node).pipe(client);
      });
    };
    tryNode(0);
  });
  balancer = server;
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => (server.address() as { port: number }).port);
}

async function startNode(data: string): Promise<{ daemon: Daemon; port: number }> {
  const daemon = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
  daemons.push(daemon);
  const port = Number((await daemon.waitFor(/"port":(\d+)/, 60_000))[1]);
  return { daemon, port };
}

/** Stored batches per host, and the highest seq (so holes and duplicates show). */
async function stored(url: string) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(
      'SELECT host_id, count(*)::int AS n, max(seq)::int AS hi, count(DISTINCT seq)::int AS distinct FROM batches GROUP BY host_id',
    );
    return r.rows as { host_id: string; n: number; hi: number; distinct: number }[];
  } finally {
    await c.end();
  }
}

test('two server nodes with their own data directories on one PostgreSQL database, several clients, a node SIGKILLed mid-stream', {
  skip: adminUrl === undefined ? `${PG_URL_ENV} not set: this test needs a PostgreSQL server` : false,
}, async (t) => {
  // Each phase's time goes to the report: on a loaded machine it tells which step was slow.
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${what} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const url = new URL(adminUrl as string);
  url.pathname = `/${dbName}`;
  const dbUrl = url.toString();

  // Each node: the database URL and its own data directory; the second takes the first's host key.
  const dataA = join(base, 'node-a');
  const dataB = join(base, 'node-b');
  const initA = await pofr(['server', 'init', '--data', dataA, '--db', dbUrl]);
  assert.equal(initA.code, 0, initA.stderr);
  const initB = await pofr(['server', 'init', '--data', dataB, '--db', dbUrl]);
  assert.equal(initB.code, 0, initB.stderr);
  const fingerprint = initA.stdout.trim();
  assert.equal(initB.stdout.trim(), fingerprint, 'both nodes serve one host key');

  let a = await startNode(dataA);
  const b = await startNode(dataB);
  const backends = [a.port, b.port];
  const port = await startBalancer(backends);

  const token = (
    await pofr(['server', 'token', '--data', dataB, '--approve', '--uses', String(CLIENTS)])
  ).stdout.trim();
  // The clients sample /proc (no kernel tracing: several recorders on one test machine).
  const env = { POFR_TRACEFS: join(base, 'no-tracefs') };
  const clients: Daemon[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const state = join(base, `client-${i}`);
    const enroll = await pofr(
      [
        ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${port}`],
        ...['--token', token, '--fingerprint', fingerprint, '--name', `node-test-${i}`],
      ],
      { env },
    );
    assert.equal(enroll.code, 0, enroll.stderr);
    const c = startPofr(['client', 'run', '--state', state, '--interval', '200', '--batch', '300'], env);
    daemons.push(c);
    clients.push(c);
  }

  let last: Awaited<ReturnType<typeof stored>> = [];
  const tail = (d: Daemon) =>
    `(${d.child.exitCode === null && d.child.signalCode === null ? 'running' : `exited ${d.child.exitCode ?? d.child.signalCode}`})\n${d.stderr().split('\n').slice(-15).join('\n')}`;
  const atLeast = (n: number) =>
    waitUntil(
      `every client with ${n} batches stored`,
      async () => {
        last = await stored(dbUrl);
        return last.length === CLIENTS && last.every((r) => r.n >= n) ? last : undefined;
      },
      120_000,
    ).catch((e: Error) => {
      // What each side said is what tells a slow machine from a stuck node or a refused client.
      const said = [
        `stored: ${JSON.stringify(last)}`,
        `node A ${tail(a.daemon)}`,
        `node B ${tail(b.daemon)}`,
        ...clients.map((c, i) => `client ${i} ${tail(c)}`),
      ];
      throw new Error(`${e.message}\n${said.join('\n')}`);
    });
  phase('clients enrolled and running');
  const before = await atLeast(3);
  phase('3 batches per client stored');
  // The balancer spread the clients: node A is ingesting for at least one when it dies.
  const onA = before.filter((r) => a.daemon.stderr().includes(r.host_id));
  assert.ok(onA.length > 0, `no client on node A: ${a.daemon.stderr()}`);

  // Node A dies mid-stream without a word; its clients reconnect through the balancer to node B.
  a.daemon.child.kill('SIGKILL');
  await once(a.daemon.child, 'exit');
  const hi = Math.max(...before.map((r) => r.hi));
  phase('node A killed');
  await atLeast(hi + 3);
  phase('node B took over');
  // Back on its own data directory, on a new port the balancer learns.
  a = await startNode(dataA);
  backends[0] = a.port;
  phase('node A back');
  await atLeast(hi + 6);
  phase('both nodes ingesting');

  for (const c of clients) assert.equal(await c.stop(20_000), 0, c.stderr());
  const rows = await stored(dbUrl);
  for (const r of rows) {
    assert.equal(r.n, r.distinct, `host ${r.host_id}: no batch stored twice`);
    assert.equal(r.n, r.hi, `host ${r.host_id}: batches 1…${r.hi} all stored, none lost`);
  }
  const verify = await pofr(['verify', '--data', dataB, '--json']);
  assert.equal(verify.code, 0, verify.stderr);
  const reports = jsonLines(verify.stdout);
  assert.equal(reports.length, CLIENTS);
  for (const r of reports) assert.deepEqual([r.ok, r.complete], [true, true], JSON.stringify(r));
});
