import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Daemon, jsonLines, pofr, startPofr, waitUntil } from '../helpers/pofr-cli.js';

const ROOT = process.getuid?.() === 0;

/** Sleeps POFR_SLEEP_MS (default 1) milliseconds whatever its arguments: a process of known length. */
const SLEEPER_C = `
#include <stdlib.h>
#include <time.h>
int main(void) {
  const char *ms = getenv("POFR_SLEEP_MS");
  long n = ms ? atol(ms) : 1;
  struct timespec t = { n / 1000, (n % 1000) * 1000000L };
  nanosleep(&t, 0);
  return 0;
}
`;

/**
 * Exact exec capture, end to end on real tracefs and uprobes: a real `pofr client run` at its
 * default interval (1 s, far longer than any of these processes) records through a real server;
 * what `pofr procs` and `pofr net` return is compared with what was run.
 */
describe('exec capture through kernel events', { skip: ROOT ? false : 'kernel tracing needs root' }, () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-exec-'));
  const data = join(base, 'server');
  const state = join(base, 'client');
  const marker = `pofr-exec-${randomBytes(4).toString('hex')}`;
  const daemons: Daemon[] = [];
  const sockets: Socket[] = [];
  const listener = createServer((s) => sockets.push(s));
  let sleeper = '';
  let staticSleeper = '';
  let client: Daemon;

  before(async () => {
    writeFileSync(join(base, 'sleeper.c'), SLEEPER_C);
    sleeper = join(base, 'sleeper');
    staticSleeper = join(base, 'sleeper-static');
    execFileSync('gcc', ['-O2', '-o', sleeper, join(base, 'sleeper.c')]);
    execFileSync('gcc', ['-O2', '-static', '-o', staticSleeper, join(base, 'sleeper.c')]);
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
    const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
    const server = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
    daemons.push(server);
    const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
    const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
    const enroll = await pofr([
      ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${port}`],
      ...['--token', token, '--fingerprint', fp, '--name', 'exec-host'],
    ]);
    assert.equal(enroll.code, 0, enroll.stderr);
    client = startPofr(['client', 'run', '--state', state, '--batch', '500']);
    daemons.push(client);
    const mode = (await client.waitFor(/"tracefs":"(\w+)".*"msg":"pofr client recording"/))[1];
    assert.equal(mode, 'tracing', `the recorder runs as root on tracefs: ${client.stderr()}`);
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    listener.close();
    for (const d of daemons) await d.stop();
    rmSync(base, { recursive: true, force: true });
  });

  /** The images of processes whose command line holds `tag`, once `count` images of `exe` ended. */
  async function execsTagged(tag: string, count: number, exe: string): Promise<Record<string, unknown>[]> {
    return waitUntil(
      `${count} processes tagged ${tag}`,
      async () => {
        const rows = jsonLines((await pofr(['procs', '--data', data, '--command', tag, '--json'])).stdout);
        return rows.filter((r) => r.exe === exe && r.end !== null).length >= count ? rows : undefined;
      },
      60_000,
    );
  }

  test('200 processes of 1 ms with unique arguments all come back with their exact argv, from the probe', async () => {
    const tag = `${marker}-ms`;
    // One shell loop forks and execs 200 one-millisecond programs, each with its own arguments.
    const script = `for i in $(seq 1 200); do "$1" "$2-$i" 'two words' $'\\xff\\xfe'; done`;
    const r = spawnSync('bash', ['-c', script, 'loop', sleeper, tag], { stdio: 'ignore' });
    assert.equal(r.status, 0);
    const rows = await execsTagged(tag, 200, sleeper);
    const byArg = new Map<string, Record<string, unknown>>();
    for (const row of rows) {
      const argv = row.argv as string[];
      if (argv[0] === sleeper) byArg.set(argv[1], row);
    }
    const missing: number[] = [];
    for (let i = 1; i <= 200; i++) {
      const row = byArg.get(`${tag}-${i}`);
      if (row === undefined) {
        missing.push(i);
        continue;
      }
      assert.deepEqual(row.argv, [sleeper, `${tag}-${i}`, 'two words', '\\xff\\xfe']);
      assert.deepEqual(
        Buffer.from(row.argv_raw_b64 as string, 'base64'),
        Buffer.concat([Buffer.from(`${sleeper}\0${tag}-${i}\0two words\0`), Buffer.from([0xff, 0xfe, 0])]),
        'argv bytes exact',
      );
      assert.equal(row.argv_source, 'probe', `process ${i}: argv from the probe`);
      assert.equal(row.argv_complete, true);
      assert.equal(row.source, 'trace');
      assert.equal(row.exe, sleeper);
      assert.ok(
        row.end !== null && row.end_reason === 'exit',
        `process ${i} ended by its exit: ${JSON.stringify(row)}`,
      );
      const lived = Date.parse(String(row.end)) - Date.parse(String(row.start));
      assert.ok(lived < 1000, `process ${i} lived ${lived} ms: the kernel's times, not a sample's`);
    }
    assert.deepEqual(missing, [], 'every one of the 200 processes is recorded');
  });

  test('a statically linked program is recorded, and its argv is marked as not from the probe', async () => {
    const tag = `${marker}-static`;
    const r = spawnSync(staticSleeper, [tag], {
      stdio: 'ignore',
      env: { ...process.env, POFR_SLEEP_MS: '1' },
    });
    assert.equal(r.status, 0);
    const [row] = await waitUntil(
      'the static program',
      async () => {
        const rows = jsonLines(
          (await pofr(['procs', '--data', data, '--command', 'sleeper-static', '--json'])).stdout,
        );
        const found = rows.filter((p) => p.exe === staticSleeper);
        return found.length > 0 ? found : undefined;
      },
      60_000,
    );
    assert.notEqual(row.argv_source, 'probe', 'no interpreter runs before a static program');
    assert.ok(['proc', 'event'].includes(String(row.argv_source)), String(row.argv_source));
    if (row.argv_source === 'event') {
      // Gone before /proc could be read: the executed path stands in, marked incomplete.
      assert.deepEqual(row.argv, [staticSleeper]);
      assert.equal(row.argv_complete, false);
    } else {
      assert.deepEqual(row.argv, [staticSleeper, tag]);
    }
    // Seen once, the static program gets a probe of its own: its next run has its exact argv.
    const again = `${tag}-again`;
    assert.equal(spawnSync(staticSleeper, [again], { stdio: 'ignore' }).status, 0);
    const run2 = (await execsTagged(again, 1, staticSleeper)).find((p) => p.exe === staticSleeper);
    assert.ok(run2);
    assert.deepEqual(run2.argv, [staticSleeper, again]);
    assert.equal(run2.argv_source, 'probe');
  });

  test('100 kB of argv with invalid UTF-8 comes back byte-exact', async () => {
    const tag = `${marker}-big`;
    const big = Buffer.concat([Buffer.from('C'.repeat(100 * 1024)), Buffer.from([0xc3, 0x28, 0xff])]);
    // A process that lives 2 s: long enough to be read from /proc (even on a loaded machine), which a
    // probe's page cannot hold. bash appends the invalid bytes (node would encode an argument as UTF-8).
    const script = `exec "$1" "$2" "$3"$'\\xc3\\x28\\xff'`;
    const r = spawnSync('bash', ['-c', script, 'big', sleeper, tag, 'C'.repeat(100 * 1024)], {
      env: { ...process.env, POFR_SLEEP_MS: '2000' },
      stdio: 'ignore',
    });
    assert.equal(r.status, 0);
    const rows = await execsTagged(tag, 1, sleeper);
    const row = rows.find((p) => (p.argv as string[])[0] === sleeper);
    assert.ok(row, JSON.stringify(rows.map((p) => p.argv_source)));
    const raw = Buffer.from(row.argv_raw_b64 as string, 'base64');
    assert.deepEqual(raw, Buffer.concat([Buffer.from(`${sleeper}\0${tag}\0`), big, Buffer.from([0])]));
    assert.equal(row.argv_complete, true);
    assert.equal(row.argv_source, 'proc', 'too long for the probe: read from /proc at the exec');
  });

  test('a 50 ms TCP connection comes back with the connecting and the accepting process', async () => {
    const port = (listener.address() as { port: number }).port;
    const script = `exec 3<>/dev/tcp/127.0.0.1/${port}; sleep 0.05; exec 3<&-; : '${marker}-tcp'`;
    const c = spawn('bash', ['-c', script], { stdio: 'ignore' });
    const connector = c.pid!;
    await once(c, 'exit');
    let all: Record<string, unknown>[] = [];
    const rows = await waitUntil(
      `both ends of the connection of ${connector} to ${port}`,
      async () => {
        all = jsonLines((await pofr(['net', '--data', data, '--port', String(port), '--json'])).stdout);
        const out = all.filter((e) => e.proto === 'tcp' && e.remote_port === port && e.pid === connector);
        const acc = all.filter((e) => e.local_port === port && e.remote_port !== 0 && e.pid === process.pid);
        return out.length > 0 && acc.length > 0 ? { out: out[0], acc } : undefined;
      },
      60_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}; the record has ${JSON.stringify(all)}`);
    });
    assert.equal(rows.out.remote_ip, '127.0.0.1');
    assert.ok(rows.out.last_seen !== null, 'the connection is closed in the record');
    const accepted = rows.acc.find((e) => e.remote_port === rows.out.local_port);
    assert.ok(accepted, 'the accepting side is the listener process, on the same connection');
  });

  test('no tracing instance or probe outlives the recorder', async () => {
    const instance = (await client.waitFor(/"instance":"(pofr_\d+_\d+_\d+)"/, 1000).catch(() => null))?.[1];
    const status = jsonLines((await pofr(['client', 'status', '--state', state, '--json'])).stdout)[0];
    const health = (status.source_health as Record<string, { instance?: string; mode?: string }>).tracefs;
    assert.equal(health.mode, 'tracing');
    const name = instance ?? health.instance!;
    assert.ok(
      readdirSync('/sys/kernel/tracing/instances').includes(name),
      'its instance exists while it runs',
    );
    // A clean stop flushes the spool first (up to 10 s): give it time on a loaded machine.
    assert.equal(await client.stop(60_000), 0, client.stderr());
    assert.ok(!readdirSync('/sys/kernel/tracing/instances').includes(name), 'and is removed when it stops');
    assert.ok(!readFileSync('/sys/kernel/tracing/uprobe_events', 'latin1').includes(name), 'with its probes');
  });
});
