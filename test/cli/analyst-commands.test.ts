import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { Command } from 'commander';
import { registerAnalystCommands } from '../../src/cli/analyst-commands.js';
import { verifyStore } from '../../src/ingest/index.js';
import { generateSigningKeyPair } from '../../src/protocol/index.js';
import { openStore, readStoreConfig } from '../../src/store/index.js';
import { initTestDataDir } from '../helpers/data-dir-engine.js';
import { addEndpoint, addFile, addHost, addProcess } from '../query/fixtures.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

const T0 = Date.UTC(2026, 10, 24, 20, 15, 0) * 1000;
let dir = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pofr-cli-'));
  const store = await openStore(await initTestDataDir(dir));
  try {
    await addHost(store, 'h1', 'web', { signing_key: generateSigningKeyPair().publicPem });
    await addHost(store, 'h2', 'db', { signing_key: 'not a key' });
    const init = await addProcess(store, { pid: 1, ppid: 0, start: T0, argv: ['/sbin/init'], comm: 'init' });
    const bash = await addProcess(store, {
      pid: 100,
      ppid: 1,
      parent_id: init,
      start: T0 + 1_000_000,
      argv: ['bash', '-c', 'echo hi\nPID FAKE\u001b[2J'],
      comm: 'bash',
      user: 'alice',
      ruid: 1000,
    });
    await addProcess(store, {
      pid: 200,
      ppid: 1,
      parent_id: init,
      start: T0 + 2_000_000,
      observer: true,
      comm: 'pofr',
    });
    await addProcess(store, {
      host_id: 'h2',
      pid: 7,
      start: T0 + 3_000_000,
      comm: 'postgres',
      end: T0 + 4_000_000,
    });
    await addFile(store, {
      process_id: bash,
      pid: 100,
      path: '/tmp/50%_off.txt',
      first_seen: T0 + 1_500_000,
      open: true,
    });
    await addFile(store, {
      process_id: bash,
      pid: 100,
      path: '/tmp/50x_off.txt',
      first_seen: T0 + 1_600_000,
    });
    await addEndpoint(store, {
      process_id: bash,
      pid: 100,
      family: 6,
      local_ip: '2001:db8::1',
      local_port: 5555,
      remote_ip: '2001:db8::2',
      remote_port: 443,
      first_seen: T0 + 1_700_000,
      open: true,
      country: 'DE',
    });
  } finally {
    await store.close();
  }
});

after(() => rmSync(dir, { recursive: true, force: true }));

async function pofr(...args: string[]): Promise<{ out: string; err: string }> {
  return pofrWith(verifyStore, ...args);
}

async function pofrWith(
  verify: Parameters<typeof registerAnalystCommands>[1]['verify'],
  ...args: string[]
): Promise<{ out: string; err: string }> {
  const out = new Sink();
  const err = new Sink();
  const program = new Command('pofr').exitOverride();
  registerAnalystCommands(program, {
    openStoreForData: (d) => openStore(readStoreConfig(d)),
    verify,
    out,
    err,
  });
  for (const c of program.commands) c.exitOverride().configureOutput({ writeErr: () => {} });
  await program.parseAsync(['node', 'pofr', ...args]);
  return { out: out.text, err: err.text };
}

const jsonLines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test('procs --json prints one object per process with the contract keys and ISO µs times', async () => {
  const { out, err } = await pofr('procs', '--data', dir, '--json');
  const rows = jsonLines(out);
  assert.deepEqual(
    rows.map((r) => r.pid),
    [1, 100, 200, 7],
  );
  for (const key of [
    'host',
    'pid',
    'ppid',
    'start',
    'end',
    'exe',
    'comm',
    'argv',
    'cmdline',
    'cwd',
    'ruid',
    'euid',
    'rgid',
    'egid',
    'user',
    'source',
    'observer',
  ]) {
    assert.ok(key in rows[1], `missing ${key}`);
  }
  assert.equal(rows[1].start, '2026-11-24T20:15:01.000000Z');
  assert.equal(rows[1].end, null);
  assert.equal(rows[3].end, '2026-11-24T20:15:04.000000Z');
  assert.deepEqual(rows[1].argv, ['bash', '-c', 'echo hi\nPID FAKE\u001b[2J']);
  assert.equal(rows[1].host, 'web');
  assert.equal(rows[2].observer, true);
  assert.equal(err, '');
});

test('procs filters: --command, --user, --pid, --host, --from/--to, --exclude-observer, --limit', async () => {
  const pids = async (...args: string[]) =>
    jsonLines((await pofr('procs', '--data', dir, '--json', ...args)).out).map((r) => r.pid);
  assert.deepEqual(await pids('--command', 'echo hi'), [100]);
  assert.deepEqual(await pids('--user', 'alice'), [100]);
  assert.deepEqual(await pids('--user', '1000'), [100]);
  assert.deepEqual(await pids('--pid', '7'), [7]);
  assert.deepEqual(await pids('--host', 'db'), [7]);
  assert.deepEqual(await pids('--host', 'h1', '--exclude-observer'), [1, 100]);
  assert.deepEqual(
    await pids('--from', '2026-11-24T20:15:01.5Z', '--to', '2026-11-24T21:15:03+01:00'),
    [1, 100, 200, 7],
  );
  assert.deepEqual(await pids('--to', '2026-11-24T20:15:00.999999Z'), [1]);
  const limited = await pofr('procs', '--data', dir, '--json', '--limit', '2');
  assert.equal(jsonLines(limited.out).length, 2);
  assert.match(limited.err, /^note: showing the first 2 rows/);
});

test('procs as a table keeps one line per process and shows control characters as escapes', async () => {
  const { out } = await pofr('procs', '--data', dir, '--pid', '100');
  const lines = out.trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0], /^HOST\s+PID\s+PPID\s+START\s+END\s+USER\s+COMMAND$/);
  assert.match(
    lines[1],
    /^web\s+100\s+1\s+2026-11-24T20:15:01\.000000Z\s+-\s+alice\s+bash -c echo hi\\nPID FAKE\\x1b\[2J$/,
  );
});

test('files --path is a glob with literal % and _; net --port matches and brackets IPv6 in the table', async () => {
  const files = jsonLines((await pofr('files', '--data', dir, '--json', '--path', '/tmp/50%_off*')).out);
  assert.deepEqual(
    files.map((f) => [f.path, f.open, f.fd, f.comm]),
    [['/tmp/50%_off.txt', true, 3, 'bash']],
  );
  assert.equal(files[0].first_seen, '2026-11-24T20:15:01.500000Z');
  const net = jsonLines((await pofr('net', '--data', dir, '--json', '--port', '443', '--country', 'de')).out);
  assert.equal(net.length, 1);
  assert.equal(net[0].remote_ip, '2001:db8::2');
  const table = (await pofr('net', '--data', dir)).out;
  assert.match(table, /\[2001:db8::1\]:5555\s+\[2001:db8::2\]:443\s+ESTABLISHED/);
  assert.equal((await pofr('net', '--data', dir, '--json', '--proto', 'udp')).out, '');
});

test('timeline --json orders events and formats every time; --kind narrows', async () => {
  const events = jsonLines(
    (await pofr('timeline', '--data', dir, '--json', '--host', 'web', '--exclude-observer')).out,
  );
  assert.deepEqual(
    events.map((e) => [e.time, e.kind, e.pid]),
    [
      ['2026-11-24T20:15:00.000000Z', 'process_start', 1],
      ['2026-11-24T20:15:01.000000Z', 'process_start', 100],
      ['2026-11-24T20:15:01.500000Z', 'file_open', 100],
      ['2026-11-24T20:15:01.600000Z', 'file_open', 100],
      ['2026-11-24T20:15:01.600000Z', 'file_close', 100],
      ['2026-11-24T20:15:01.700000Z', 'endpoint_open', 100],
    ],
  );
  assert.equal(events[1].summary, "bash -c 'echo hi\nPID FAKE\u001b[2J' (uid 1000 alice)");
  const exits = jsonLines((await pofr('timeline', '--data', dir, '--json', '--kind', 'process_exit')).out);
  assert.deepEqual(
    exits.map((e) => [e.host, e.pid, e.time]),
    [['db', 7, '2026-11-24T20:15:04.000000Z']],
  );
});

test('tree --at prints the live tree with children indented under parents', async () => {
  const { out } = await pofr('tree', '--data', dir, '--host', 'web', '--at', '2026-11-24T20:15:05Z');
  const lines = out.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[1], /\s\/sbin\/init$/);
  assert.match(lines[2], /\s {2}bash -c echo hi\\nPID FAKE\\x1b\[2J$/);
  assert.match(lines[3], /\s {2}pofr$/);
  const rows = jsonLines((await pofr('tree', '--data', dir, '--json', '--at', '2026-11-24T20:15:01Z')).out);
  assert.deepEqual(
    rows.map((r) => [r.pid, r.depth]),
    [
      [1, 0],
      [100, 1],
    ],
  );
});

test('hosts and sql print rows; sql refuses writes', async () => {
  const hosts = jsonLines((await pofr('hosts', '--data', dir, '--json')).out);
  assert.deepEqual(
    hosts.map((h) => [h.name, h.host_id, h.first_seen]),
    [
      ['db', 'h2', '1970-01-01T00:00:00.001000Z'],
      ['web', 'h1', '1970-01-01T00:00:00.001000Z'],
    ],
  );
  const rows = jsonLines(
    (await pofr('sql', '--data', dir, '--json', 'SELECT pid, comm FROM processes ORDER BY pid')).out,
  );
  assert.deepEqual(rows[0], { pid: 1, comm: 'init' });
  const table = (await pofr('sql', '--data', dir, 'SELECT pid, comm FROM processes WHERE pid = 7')).out;
  assert.equal(table, 'pid  comm\n7    postgres\n');
  await assert.rejects(pofr('sql', '--data', dir, 'DELETE FROM processes'), { code: 'POFR_SQL_READONLY' });
  assert.equal(
    jsonLines((await pofr('sql', '--data', dir, '--json', 'SELECT * FROM processes')).out).length,
    4,
  );
});

test('verify prints one row per host and sets exit status 1 when a host fails', async () => {
  try {
    const { out } = await pofr('verify', '--data', dir, '--json', '--quick');
    const rows = jsonLines(out);
    assert.deepEqual(rows.map((r) => [r.host, r.ok, r.batches, r.gaps]).sort(), [
      ['db', false, 0, 0],
      ['web', true, 0, 0],
    ]);
    const failed = rows.find((r) => r.host === 'db')!;
    assert.equal((failed.failures as { code: string }[])[0].code, 'POFR_BATCH_SIGNATURE');
    assert.equal(process.exitCode, 1);
    process.exitCode = undefined;
    await pofr('verify', '--data', dir, '--host', 'web', '--quick');
    assert.equal(process.exitCode, undefined);
    const table = (await pofr('verify', '--data', dir, '--host', 'db')).out;
    assert.match(table, /db\s+h2\s+0\s+NO\s+NO\s+no\s+0\s+-\s+1: seq 0 POFR_BATCH_SIGNATURE/);
    // Without --quick, web's rows (written here without any batch) are not derivable from evidence.
    const [full] = jsonLines((await pofr('verify', '--data', dir, '--host', 'web', '--json')).out);
    assert.equal(full.ok, false);
    assert.match(
      JSON.stringify(full.failures),
      /processes row .* is in the store but the evidence does not derive it/,
    );
    assert.equal(process.exitCode, 1);
  } finally {
    process.exitCode = undefined;
  }
});

test('verify exits 3 for an authentic record with known gaps, listing each; --allow-gaps accepts them', async () => {
  const gap = {
    kind: 'refused_batch',
    seq_from: 7,
    seq_to: 7,
    t_from: null,
    t_to: null,
    detail: 'batch 7 was refused: POFR_BATCH_SEAL: …',
  };
  const incomplete = async () => [
    {
      host_id: 'h1',
      host: 'web',
      batches: 9,
      ok: true,
      sealed: true,
      pruned: null,
      gaps: 1,
      complete: false,
      known_gaps: [gap],
      failures: [],
    },
  ];
  try {
    const { out, err } = await pofrWith(incomplete, 'verify', '--data', dir, '--json');
    assert.equal(process.exitCode, 3);
    const [row] = jsonLines(out);
    assert.deepEqual([row.ok, row.complete, row.gaps, row.known_gaps], [true, false, 1, [gap]]);
    assert.match(err, /web \(h1\) known gap, refused_batch: batch 7 was refused: POFR_BATCH_SEAL/);
    assert.match(err, /exit status 3; --allow-gaps accepts them/);
    process.exitCode = undefined;
    const table = await pofrWith(incomplete, 'verify', '--data', dir);
    assert.match(table.out, /web\s+h1\s+9\s+yes\s+NO\s+yes\s+1\s+1: refused_batch seq 7/);
    process.exitCode = undefined;
    await pofrWith(incomplete, 'verify', '--data', dir, '--allow-gaps');
    assert.equal(process.exitCode, undefined, '--allow-gaps: authentic is enough');
    const failing = async () => [
      { ...(await incomplete())[0], ok: false, failures: [{ seq: 3, code: 'POFR_BATCH_SEAL', reason: 'x' }] },
    ];
    await pofrWith(failing, 'verify', '--data', dir, '--allow-gaps');
    assert.equal(process.exitCode, 1, 'a failure is 1 whatever else');
  } finally {
    process.exitCode = undefined;
  }
});

test('bad arguments fail with the error codes the entry point maps to exit status 2 or 1', async () => {
  await assert.rejects(pofr('procs', '--data', dir, '--host', 'nope'), { code: 'POFR_HOST_UNKNOWN' });
  await assert.rejects(pofr('procs', '--data', dir, '--from', 'yesterday'), { code: 'POFR_TIME_FORMAT' });
  await assert.rejects(pofr('procs', '--data', dir, '--from', '-1h', '--to', '-2h'), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('procs', '--data', dir, '--limit', '0'), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('net', '--data', dir, '--port', '70000'), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('net', '--data', dir, '--proto', 'icmp'), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('timeline', '--data', dir, '--kind', 'boot'), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('tree', '--data', dir, '--from', '-1h'), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('procs', '--data', dir, '--command', 'a('), { code: 'POFR_USAGE' });
  await assert.rejects(pofr('procs', '--data', dir, '--bogus'), { code: 'commander.unknownOption' });
  await assert.rejects(pofr('procs', '--data', join(dir, 'missing')), { code: 'POFR_STORE_INIT' });
});
