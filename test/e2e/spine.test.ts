import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openStore, readStoreConfig } from '../../src/store/index.js';
import { type Daemon, jsonLines, pofr, startPofr } from '../helpers/pofr-cli.js';

/**
 * The spine, end to end, as real processes: `pofr server run` and `pofr client run` talk SSH over
 * loopback into a real store (SQLite, or PostgreSQL with POFR_TEST_ENGINE=postgres); a known command with a unique, hostile argv opens a hostile file
 * name and a TCP connection; the analyst verbs find all of it; `pofr verify` passes, then fails
 * after one stored evidence byte is changed.
 */
describe('record → SSH → store → query', () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-e2e-'));
  const data = join(base, 'server');
  const state = join(base, 'client');
  const work = join(base, 'work');
  const marker = `pofr-e2e-${randomBytes(4).toString('hex')}`;
  const big = 'B'.repeat(100 * 1024);
  const hostileName = Buffer.concat([
    Buffer.from(`it's "quoted"\n%s%n `),
    Buffer.from([0xff, 0xfe]),
    Buffer.from('.txt'),
  ]);
  const daemons: Daemon[] = [];
  const sockets: Socket[] = [];
  const listener = createServer((s) => sockets.push(s));
  let server: Daemon;
  let listenPort = 0;
  let pid = 0;

  before(async () => {
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    listenPort = (listener.address() as { port: number }).port;
  });

  after(async () => {
    for (const d of daemons) await d.stop(5000);
    for (const s of sockets) s.destroy();
    listener.close();
    rmSync(base, { recursive: true, force: true });
  });

  test('a server starts, a client enrolls with a token and pins the server key', async () => {
    const init = await pofr(['server', 'init', '--data', data]);
    assert.equal(init.code, 0, init.stderr);
    const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
    assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
    server = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
    daemons.push(server);
    const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
    const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
    assert.match(token, /^pofr_/);
    const enroll = await pofr([
      'client',
      'enroll',
      '--state',
      state,
      '--server',
      `127.0.0.1:${port}`,
      '--token',
      token,
      '--fingerprint',
      fp,
      '--name',
      'e2e-host',
    ]);
    assert.equal(enroll.code, 0, enroll.stderr);
    const clients = jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout);
    assert.equal(clients.length, 1);
    assert.equal(clients[0].name, 'e2e-host');
    assert.equal(clients[0].status, 'approved');
  });

  test('a known command is recorded with its argv, its file and its TCP connection', async () => {
    const client = startPofr(['client', 'run', '--state', state, '--interval', '200', '--batch', '500']);
    daemons.push(client);
    // Root with tracefs records from kernel events; anywhere else the recorder samples /proc alone.
    const tracing =
      (await client.waitFor(/"tracefs":"(\w+)".*"msg":"pofr client recording"/))[1] === 'tracing';
    const second = await pofr(['client', 'run', '--state', state]);
    assert.equal(second.code, 2, 'one recorder per state directory');
    assert.match(second.stderr, /already records/);
    // An outer bash builds the hostile bytes ($'\xff' is not valid UTF-8) and execs the marked
    // command; the trailing `; :` keeps the inner bash (and its argv) alive instead of exec'ing sleep.
    const script = [
      `name=$'it\\'s "quoted"\\n%s%n \\xff\\xfe.txt'`,
      `mkdir -p "$1"`,
      // Long enough for the recorder (200 ms interval) to see this image before the exec replaces it.
      `sleep 1`,
      `exec bash -c 'exec 7>"$1"; exec 8<>"/dev/tcp/127.0.0.1/$2"; sleep 4; :' $'${marker}\\xff' "$1/$name" "$2" "$3"`,
    ].join('\n');
    const cmd = spawn('bash', ['-c', script, 'outer', work, String(listenPort), big], { stdio: 'ignore' });
    pid = cmd.pid!;
    await once(cmd, 'exit');
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await client.stop(), 0, client.stderr());

    const procs = jsonLines((await pofr(['procs', '--data', data, '--command', marker, '--json'])).stdout);
    // The outer bash (its script carries the marker too) ran 1 s before it exec'd the marked command:
    // the same pid has two images, in exec order.
    const images = procs
      .filter((p) => p.pid === pid)
      .sort((a, b) => Number(a.exec_index) - Number(b.exec_index));
    assert.equal(
      images.length,
      2,
      `process ${pid} with marker ${marker}: expected its image before and after exec; got ${JSON.stringify(procs.map((p) => [p.pid, p.exec_index, p.cmdline]))}`,
    );
    const [outer, row] = images;
    assert.equal((outer.argv as string[])[3], 'outer', 'the image before exec is the outer bash');
    // With exec events the fork's copy of its parent (no marker) comes first; sampling starts at bash.
    assert.equal(Number(row.exec_index), Number(outer.exec_index) + 1, 'consecutive images of one process');
    assert.equal(outer.end, row.start, 'the exec ends one image where the next begins');
    const argv = row.argv as string[];
    assert.equal(argv[0], 'bash');
    assert.equal(argv[3], `${marker}\\xff`);
    assert.equal(argv[6], big, 'the 100 kB argument is stored whole');
    const raw = Buffer.from(row.argv_raw_b64 as string, 'base64');
    assert.ok(
      raw.includes(Buffer.concat([Buffer.from(marker), Buffer.from([0xff, 0x00])])),
      'argv bytes are kept exactly',
    );
    assert.ok(typeof row.start === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(row.start));
    assert.equal(row.source, tracing ? 'trace' : 'sample');
    assert.equal(row.observer, false);
    // 100 kB of argv is more than a probe carries: it is read from /proc at the exec, whole.
    assert.equal(row.argv_source, 'proc');
    assert.equal(row.argv_complete, true);

    const files = jsonLines((await pofr(['files', '--data', data, '--pid', String(pid), '--json'])).stdout);
    const file = files.find((f) => f.fd === 7);
    assert.ok(file, `fd 7 of ${pid} not found in ${JSON.stringify(files)}`);
    assert.deepEqual(
      Buffer.from(file.path_raw_b64 as string, 'base64'),
      Buffer.concat([Buffer.from(`${work}/`), hostileName]),
    );
    assert.equal(file.kind, 'file');

    const net = jsonLines(
      (await pofr(['net', '--data', data, '--port', String(listenPort), '--proto', 'tcp', '--json'])).stdout,
    );
    const conn = net.find((n) => n.pid === pid);
    assert.ok(conn, `no TCP endpoint of ${pid} to port ${listenPort} in ${JSON.stringify(net)}`);
    assert.equal(conn.remote_ip, '127.0.0.1');
    assert.equal(conn.remote_port, listenPort);
    // `state` is the latest one (by the end, often TIME_WAIT); the history must show it established.
    const tl = jsonLines((await pofr(['timeline', '--data', data, '--json', '--limit', '1000000'])).stdout);
    const states = tl.filter(
      (e) => e.pid === pid && String(e.kind).startsWith('endpoint_') && e.remote_port === listenPort,
    );
    assert.ok(
      states.some((e) => e.state === 'ESTABLISHED'),
      `no ESTABLISHED state for the connection in ${JSON.stringify(states)}`,
    );
  });

  test('hosts, timeline and tree answer from the same record', async () => {
    const hosts = jsonLines((await pofr(['hosts', '--data', data, '--json'])).stdout);
    assert.equal(hosts[0].name, 'e2e-host');
    assert.ok(typeof hosts[0].kernel === 'string' && (hosts[0].kernel as string).length > 0);
    const tl = jsonLines((await pofr(['timeline', '--data', data, '--json', '--limit', '1000000'])).stdout);
    const kinds = new Set(tl.filter((e) => e.pid === pid).map((e) => e.kind));
    for (const k of ['process_start', 'file_open', 'endpoint_open', 'process_exit'])
      assert.ok(kinds.has(k), `timeline lacks ${k} for ${pid}`);
    const times = tl.map((e) => e.time as string);
    assert.deepEqual([...times].sort(), times, 'timeline is in time order');
    const [proc] = jsonLines((await pofr(['procs', '--data', data, '--pid', String(pid), '--json'])).stdout);
    const during = new Date(Date.parse(proc.start as string) + 1500).toISOString();
    const tree = jsonLines((await pofr(['tree', '--data', data, '--at', during, '--json'])).stdout);
    const node = tree.find((n) => n.pid === pid);
    assert.ok(node, `pid ${pid} is not in the tree at ${during}`);
    assert.ok((node.depth as number) > 0, 'the command sits under its parent');
    assert.ok(
      tree.some((n) => n.pid === node.ppid),
      'its parent is in the tree too',
    );
  });

  test('pofr verify passes, fails on an edited row, and fails once one stored evidence byte changes', async () => {
    const ok = await pofr(['verify', '--data', data, '--json']);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    const report = jsonLines(ok.stdout);
    assert.equal(report[0].ok, true);
    assert.ok((report[0].batches as number) > 0);

    assert.equal(await server.stop(), 0, server.stderr());
    // Opened as the server opens it, so the edits reach SQLite or PostgreSQL alike (POFR_TEST_ENGINE).
    const store = await openStore(readStoreConfig(data));
    try {
      // An edited row, evidence intact: re-derivation from the signed batches catches it.
      // The pid has two images (the outer bash before its exec): edit exactly the marked one.
      const original = await store.db
        .selectFrom('processes')
        .select(['id', 'argv'])
        .where('pid', '=', pid)
        .orderBy('exec_index', 'desc')
        .executeTakeFirstOrThrow();
      const setArgv = (argv: string) =>
        store.db.updateTable('processes').set({ argv }).where('id', '=', original.id).execute();
      await setArgv('["bash","-c","innocent"]');
      const edited = await pofr(['verify', '--data', data, '--json']);
      assert.equal(edited.code, 1, 'an edited processes row fails verify');
      assert.match(JSON.stringify(jsonLines(edited.stdout)), /processes/);
      const quick = await pofr(['verify', '--data', data, '--quick', '--json']);
      assert.equal(quick.code, 0, '--quick checks the evidence only, which is intact');
      await setArgv(original.argv);
      assert.equal((await pofr(['verify', '--data', data])).code, 0, 'restored, it verifies again');

      const row = await store.db
        .selectFrom('batch_evidence')
        .select(['host_id', 'seq', 'raw'])
        .orderBy('seq')
        .limit(1)
        .executeTakeFirstOrThrow();
      const tampered = Buffer.from(row.raw);
      tampered[tampered.length >> 1] ^= 0x20;
      await store.db
        .updateTable('batch_evidence')
        .set({ raw: tampered })
        .where('host_id', '=', row.host_id)
        .where('seq', '=', row.seq)
        .execute();
    } finally {
      await store.close();
    }
    const bad = await pofr(['verify', '--data', data, '--json']);
    assert.equal(bad.code, 1);
    const badReport = jsonLines(bad.stdout);
    assert.equal(badReport[0].ok, false);
  });
});
