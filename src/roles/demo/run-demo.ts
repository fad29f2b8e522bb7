import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findProcesses, type TimelineEvent, timeline } from '../../query/index.js';
import { initStoreConfig } from '../../store/index.js';
import { enrollClient } from '../client/enroll-client.js';
import { runClient } from '../client/run-client.js';
import { createToken } from '../server/enrollment.js';
import { runServer } from '../server/run-server.js';
import { startIncident } from './incident.js';

export type Log = (msg: string, fields?: object) => void;

export interface DemoOptions {
  readonly seconds: number;
  /** Keep the demo's server data for exploration after the demo (default true). */
  readonly keep: boolean;
  readonly log: Log;
  /** Human-readable progress (stderr). */
  readonly say: (line: string) => void;
}

export interface DemoResult {
  readonly dataDir: string | null;
  readonly marker: string;
  readonly incidentEvents: readonly TimelineEvent[];
  readonly root: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Everything end to end on one machine: a server on SQLite, a client enrolled over SSH on loopback,
 * this machine recorded while the scripted incident runs, then the incident's timeline from the store.
 */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const root = process.getuid?.() === 0;
  const base = mkdtempSync(join(tmpdir(), 'pofr-demo-'));
  const dataDir = join(base, 'server');
  const stateDir = join(base, 'client');
  const workDir = join(base, 'incident');
  mkdirSync(workDir);
  const marker = `pofr-demo-${randomBytes(4).toString('hex')}`;
  let keep = opts.keep;
  try {
    if (!root) {
      opts.say(
        'not root: recording what an unprivileged user can see (other users’ files, executables and sockets stay hidden)',
      );
    }
    initStoreConfig(dataDir);
    const server = await runServer({ dataDir, host: '127.0.0.1', port: 0, log: opts.log });
    let client: Awaited<ReturnType<typeof runClient>> | null = null;
    try {
      const token = await createToken(server.store, { ttlMs: 600_000, uses: 1, approve: true });
      const enrollment = await enrollClient({
        stateDir,
        server: `127.0.0.1:${server.port}`,
        token,
        fingerprint: server.fingerprint,
        name: 'demo-host',
      });
      opts.say(
        `server on 127.0.0.1:${server.port} (${server.fingerprint}); client enrolled over SSH as ${enrollment.host_id}`,
      );
      client = await runClient({
        stateDir,
        intervalMs: 200,
        batchMs: 1000,
        keyframeMs: 10_000,
        log: opts.log,
      });
      const started = Date.now();
      await sleep(1000);
      opts.say(
        `incident ${marker}: download over TCP, payload under /tmp executed, loot file, short-lived shell`,
      );
      const incident = await startIncident(workDir, marker);
      const code = await Promise.race([incident.done, sleep(30_000).then(() => -1)]);
      if (code !== 0) {
        incident.kill();
        opts.say(`the incident script ended with status ${code}; the timeline shows what was recorded`);
      }
      const left = opts.seconds * 1000 - (Date.now() - started);
      if (left > 0) {
        opts.say(`recording ${Math.ceil(left / 1000)} s more`);
        await sleep(left);
      }
      await client.stop(15_000);
      client = null;
      const from = started * 1000;
      const procs = await findProcesses(server.store, { from, command: marker, observer: false });
      const rootPids = new Set(procs.map((p) => p.pid));
      const all = await findProcesses(server.store, { from, observer: false, limit: 100_000 });
      // The incident's process tree: everything descending from the processes whose argv has the marker.
      const pids = new Set(rootPids);
      for (let grew = true; grew; ) {
        grew = false;
        for (const p of all) {
          if (!pids.has(p.pid) && pids.has(p.ppid)) {
            pids.add(p.pid);
            grew = true;
          }
        }
      }
      // The story, without the plumbing every process holds (stdio pipes, /dev/null, event fds):
      // sockets appear as endpoints, so descriptors of kind file and dir are what the analyst reads.
      const events = (await timeline(server.store, { from, observer: false, limit: 1_000_000 })).filter(
        (e) =>
          e.pid !== null &&
          pids.has(e.pid) &&
          (e.kind !== 'file_open' && e.kind !== 'file_close'
            ? true
            : e.file_kind === 'file' || e.file_kind === 'dir'),
      );
      return { dataDir: keep ? dataDir : null, marker, incidentEvents: events, root };
    } finally {
      if (client) await client.stop(1000);
      await server.close();
    }
  } catch (e) {
    keep = false;
    throw e;
  } finally {
    if (!keep) rmSync(base, { recursive: true, force: true });
    else rmSync(workDir, { recursive: true, force: true });
  }
}
