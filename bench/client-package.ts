import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildClientPackages, buildServerPackage } from '../src/package/index.js';
import { enrollClient } from '../src/roles/client/enroll-client.js';
import { createToken, listClients } from '../src/roles/server/enrollment.js';
import { runServer } from '../src/roles/server/run-server.js';
import { initStoreConfig } from '../src/store/index.js';
import { pofrVersion } from '../src/version.js';
import { type BenchResult, isMain, median } from './bench-result.js';

/**
 * The packaged client: the size of each file `package-client` and `package-server` write, the
 * single-file client's start-up time (spawn → "recording") and resident memory while recording,
 * against the same client run as `node dist/src/cli/main.js client run` (the baseline, same run),
 * and the time from `dpkg -i` to the first batch the server acknowledged (as root, without systemd).
 */
const RUNS = Number(process.env.POFR_BENCH_PACKAGE_RUNS ?? 5);
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/** Spawns a recorder, returns ms until it logs that it records and its RSS after `settleMs`. */
async function startAndMeasure(
  cmd: string,
  args: string[],
  settleMs: number,
): Promise<{ ms: number; rss: number }> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const ms = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('pofr client recording')) resolve(performance.now() - t0);
    });
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${log}`)));
  });
  await new Promise((r) => setTimeout(r, settleMs));
  const rss = rssKiB(child.pid!);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return { ms, rss };
}

/** Runs a command without blocking: the server the installed client talks to lives in this process. */
function exec(cmd: string, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

function canInstall(): boolean {
  return (
    process.getuid?.() === 0 &&
    !existsSync('/run/systemd/system') &&
    spawnSync('dpkg-query', ['-W', 'pofr-client']).status !== 0 &&
    !existsSync('/var/lib/pofr/client.json') &&
    !existsSync('/etc/pofr/client.json')
  );
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

export async function run(): Promise<BenchResult> {
  const base = mkdtempSync(join(tmpdir(), 'pofr-bench-pkg-'));
  const lines: string[] = [];
  const metrics: Record<string, number> = {};
  const quiet = () => {};
  const dataDir = join(base, 'data');
  initStoreConfig(dataDir);
  const server = await runServer({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    log: quiet,
    geoip: null,
  });
  try {
    const address = `127.0.0.1:${server.port}`;
    const token = await createToken(server.store, { ttlMs: 3_600_000, uses: 100, approve: true });
    let t = performance.now();
    const built = await buildClientPackages({
      outDir: join(base, 'out'),
      version: pofrVersion(),
      config: { server: address, fingerprint: server.fingerprint, token },
    });
    metrics.client_build_s = (performance.now() - t) / 1000;
    t = performance.now();
    const serverDeb = buildServerPackage({ outDir: join(base, 'out'), version: pofrVersion() });
    metrics.server_build_s = (performance.now() - t) / 1000;
    metrics.executable_bytes = built.sizes[built.executable];
    metrics.client_deb_bytes = built.sizes[built.deb];
    metrics.client_tarball_bytes = built.sizes[built.tarball];
    metrics.server_deb_bytes = serverDeb.bytes;
    lines.push(
      `pofr-client executable ${mib(metrics.executable_bytes)}, .deb ${mib(metrics.client_deb_bytes)}, .tar.gz ${mib(metrics.client_tarball_bytes)} (built in ${metrics.client_build_s.toFixed(0)} s)`,
      `pofr-server .deb ${mib(metrics.server_deb_bytes)} (built in ${metrics.server_build_s.toFixed(0)} s)`,
    );

    // The same recorder, enrolled twice: as the single file, and as node running the checkout.
    const seaState = join(base, 'sea');
    const nodeState = join(base, 'node');
    for (const [state, name] of [
      [seaState, 'bench-sea'],
      [nodeState, 'bench-node'],
    ]) {
      await enrollClient({ stateDir: state, server: address, token, fingerprint: server.fingerprint, name });
    }
    const sea: { ms: number; rss: number }[] = [];
    const node: { ms: number; rss: number }[] = [];
    for (let i = 0; i < RUNS; i++) {
      sea.push(await startAndMeasure(built.executable, ['run', '--state', seaState], 5000));
      node.push(await startAndMeasure(process.execPath, [MAIN, 'client', 'run', '--state', nodeState], 5000));
    }
    metrics.sea_start_ms = median(sea.map((r) => r.ms));
    metrics.node_start_ms = median(node.map((r) => r.ms));
    metrics.sea_rss_kib = median(sea.map((r) => r.rss));
    metrics.node_rss_kib = median(node.map((r) => r.rss));
    lines.push(
      `start-up to recording (median of ${RUNS}): single file ${metrics.sea_start_ms.toFixed(0)} ms, baseline node dist/ ${metrics.node_start_ms.toFixed(0)} ms — ${(metrics.sea_start_ms / metrics.node_start_ms).toFixed(2)} × baseline`,
      `RSS after 5 s recording: single file ${(metrics.sea_rss_kib / 1024).toFixed(1)} MiB, baseline ${(metrics.node_rss_kib / 1024).toFixed(1)} MiB — ${(metrics.sea_rss_kib / metrics.node_rss_kib).toFixed(2)} × baseline`,
    );

    if (canInstall()) {
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const before = new Set((await listClients(server.store)).map((c) => c.host_id));
        const t0 = performance.now();
        try {
          const r = await exec('dpkg', ['-i', built.deb]);
          if (r.code !== 0) throw new Error(`dpkg -i failed: ${r.stderr}`);
          for (;;) {
            const fresh = (await listClients(server.store)).find((c) => !before.has(c.host_id));
            if (fresh?.last_seq != null) break;
            if (performance.now() - t0 > 120_000) throw new Error('no batch within 120 s of dpkg -i');
            await new Promise((res) => setTimeout(res, 50));
          }
          times.push(performance.now() - t0);
        } finally {
          await exec('dpkg', ['-P', 'pofr-client']);
        }
      }
      metrics.dpkg_to_first_ack_ms = median(times);
      lines.push(
        `dpkg -i → first batch ACKed (median of 3, the recorder's first batch is sealed after --batch 5 s): ${(metrics.dpkg_to_first_ack_ms / 1000).toFixed(1)} s`,
      );
    } else {
      lines.push('dpkg -i → first ACK: skipped (needs root, no systemd, and no pofr-client installed here)');
    }
    return { name: 'client-package', lines, metrics };
  } finally {
    await server.close();
    rmSync(base, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
