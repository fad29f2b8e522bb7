import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { listTgids, ProcfsSampler, Recorder } from '../src/recorder/index.js';
import { type BenchResult, isMain, median } from './bench-result.js';

/**
 * One sampling cycle of the procfs recorder on a host of ~500 processes holding ~10 files each,
 * against the physical floor measured in the same run: a naive full /proc pass in C (stat, status,
 * cmdline, every fd link), from ../shared/bench/naive-proc-pass.c.
 *
 * The extra processes come from a tiny C holder that forks N children, each holding 10 files open.
 * One in ten children wakes every 100 ms (so steady cycles see some busy processes, whose fd
 * tables the sampler must re-read); the others sleep.
 */
const TARGET_PROCESSES = Number(process.env.POFR_BENCH_PROCESSES ?? 500);
const FILES_PER_HOLDER = 10;
const KEYFRAME_CYCLES = 15;
const STEADY_CYCLES = 40;
const STEADY_PERIOD_MS = 250;
/** The quiet-host figure: the whole recorder (events + sampler) at --interval 100. */
const TRACED_INTERVAL_MS = 100;
const TRACED_SECONDS = 10;

const HOLDER_C = `
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  char path[4096];
  for (int i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (int k = 0; k < ${FILES_PER_HOLDER}; k++) {
        snprintf(path, sizeof path, "%s/held-%d.txt", argv[2], k);
        if (open(path, O_RDONLY) < 0) _exit(1);
      }
      if (i % 10 == 0) for (;;) usleep(100000);
      for (;;) pause();
    }
    if (p < 0) { perror("fork"); return 1; }
  }
  printf("ready\\n");
  fflush(stdout);
  for (;;) pause();
}
`;

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('sampling-cycle: no package.json above the bench script');
    dir = up;
  }
  return dir;
}

function gcc(src: string, out: string): void {
  try {
    execFileSync('gcc', ['-O2', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`sampling-cycle: gcc -O2 ${src} failed (is gcc installed?): ${String(e)}`);
  }
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

export async function run(): Promise<BenchResult> {
  const tmp = mkdtempSync(join(tmpdir(), 'pofr-bench-sampling-'));
  let holder: ChildProcess | undefined;
  try {
    const naiveSrc = resolve(repoRoot(), '..', 'shared', 'bench', 'naive-proc-pass.c');
    if (!existsSync(naiveSrc)) throw new Error(`sampling-cycle: baseline ${naiveSrc} not found`);
    const naiveBin = join(tmp, 'naive-proc-pass');
    gcc(naiveSrc, naiveBin);
    writeFileSync(join(tmp, 'holder.c'), HOLDER_C);
    const holderBin = join(tmp, 'holder');
    gcc(join(tmp, 'holder.c'), holderBin);
    for (let k = 0; k < FILES_PER_HOLDER; k++) writeFileSync(join(tmp, `held-${k}.txt`), `file ${k}\n`);

    const before = listTgids().length;
    const holders = Math.max(0, TARGET_PROCESSES - before - 1);
    holder = spawn(holderBin, [String(holders), tmp], {
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await once(holder.stdout!, 'data');
    await sleep(200);
    const processes = listTgids().length;

    // bash's `times` gives the pass's CPU too: on a shared, loaded machine its wall time (what the
    // program prints) grows with the load, its CPU time does not.
    const naiveOut = execFileSync('bash', ['-c', '"$1"; times', 'naive', naiveBin], { encoding: 'utf8' });
    const m = /procs (\d+) ms\/scan ([\d.]+)/.exec(naiveOut);
    const children = /\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(naiveOut);
    if (!m || !children) throw new Error(`sampling-cycle: unexpected baseline output: ${naiveOut}`);
    const naiveProcs = Number(m[1]);
    const naiveMs = Number(m[2]);
    const naiveCpuMs =
      ((Number(children[1]) * 60 + Number(children[2]) + Number(children[3]) * 60 + Number(children[4])) *
        1000) /
      50;

    // Cold: the very first poll reads everything of every process (status, cmdline, exe, cwd, fds).
    const cold = new ProcfsSampler();
    let t = Date.now() * 1000;
    let c0 = cpuMs();
    let w0 = performance.now();
    const first = cold.poll(t);
    const coldMs = performance.now() - w0;
    const coldCpu = cpuMs() - c0;
    cold.close();
    const kf = first[0];
    const fds = kf?.type === 'keyframe' ? kf.files.length : 0;

    // Keyframe cycles: every poll a keyframe (argv and exe re-checked, every fd table re-read).
    const full = new ProcfsSampler({ keyframeEveryMs: 0 });
    full.poll(t);
    const kfWall: number[] = [];
    const kfCpu: number[] = [];
    for (let i = 0; i < KEYFRAME_CYCLES; i++) {
      t += 1_000_000;
      c0 = cpuMs();
      w0 = performance.now();
      full.poll(t);
      kfWall.push(performance.now() - w0);
      kfCpu.push(cpuMs() - c0);
    }
    full.close();

    // Steady cycles at 4 Hz: only what changed is read.
    const steady = new ProcfsSampler();
    steady.poll(Date.now() * 1000);
    const stWall: number[] = [];
    const stCpu: number[] = [];
    for (let i = 0; i < STEADY_CYCLES; i++) {
      await sleep(STEADY_PERIOD_MS);
      c0 = cpuMs();
      w0 = performance.now();
      steady.poll(Date.now() * 1000);
      stWall.push(performance.now() - w0);
      stCpu.push(cpuMs() - c0);
    }
    steady.close();

    // The recorder as `client run --interval 100` composes it: kernel events cover processes and
    // TCP, so the sampler looks only at the processes the events report (their fds), every 100 ms.
    const traced = await recorderCpu(true);
    const sampledOnly = await recorderCpu(false);

    const keyframeMs = median(kfWall);
    const keyframeCpuMs = median(kfCpu);
    const steadyMs = median(stWall);
    const steadyCpuMs = median(stCpu);
    // At 4 Hz with a keyframe every 60 s: 239 steady cycles and one keyframe per minute.
    const avgCycleCpuMs = (239 * steadyCpuMs + keyframeCpuMs) / 240;
    const corePct = (avgCycleCpuMs * 4) / 10;
    const naiveCorePct = (naiveMs * 4) / 10;
    const metrics = {
      processes,
      holders,
      fds,
      naive_procs: naiveProcs,
      naive_ms_per_pass: naiveMs,
      cold_poll_ms: coldMs,
      cold_poll_cpu_ms: coldCpu,
      keyframe_cycle_ms: keyframeMs,
      keyframe_cycle_cpu_ms: keyframeCpuMs,
      steady_cycle_ms: steadyMs,
      steady_cycle_cpu_ms: steadyCpuMs,
      keyframe_vs_naive: keyframeMs / naiveMs,
      steady_vs_naive: steadyMs / naiveMs,
      core_pct_at_4hz: corePct,
      naive_core_pct_at_4hz: naiveCorePct,
      cpu_ratio_vs_naive_at_4hz: avgCycleCpuMs / naiveMs,
      traced_mode: traced.mode === 'tracing' ? 1 : 0,
      naive_cpu_ms_per_pass: naiveCpuMs,
      traced_cpu_ms_per_s_at_10hz: traced.cpuMsPerS,
      sampled_cpu_ms_per_s_at_10hz: sampledOnly.cpuMsPerS,
      naive_cpu_ms_per_s_at_10hz: naiveCpuMs * 10,
      traced_vs_naive_cpu_at_10hz: traced.cpuMsPerS / (naiveCpuMs * 10),
      sampled_vs_naive_cpu_at_10hz: sampledOnly.cpuMsPerS / (naiveCpuMs * 10),
    };
    const lines = [
      `host: ${processes} processes (${holders} holders × ${FILES_PER_HOLDER} files, 1 in 10 waking every 100 ms), ${fds} open fds`,
      `baseline, naive C pass (gcc -O2, ${naiveProcs} procs): ${fmt(naiveMs)} ms/pass wall, ${fmt(naiveCpuMs)} ms/pass CPU`,
      `sampler, first poll (cold, reads everything):   ${fmt(coldMs)} ms wall, ${fmt(coldCpu)} ms CPU`,
      `sampler, keyframe cycle (median of ${KEYFRAME_CYCLES}):        ${fmt(keyframeMs)} ms wall, ${fmt(keyframeCpuMs)} ms CPU — ${fmt(keyframeMs / naiveMs)} × naive`,
      `sampler, steady cycle at 4 Hz (median of ${STEADY_CYCLES}):  ${fmt(steadyMs)} ms wall, ${fmt(steadyCpuMs)} ms CPU — ${fmt(steadyMs / naiveMs)} × naive`,
      `at 4 Hz with 60 s keyframes: ${fmt(corePct)} % of a core (the naive pass at 4 Hz: ${fmt(naiveCorePct)} %), CPU ${fmt(avgCycleCpuMs / naiveMs, 3)} × naive`,
      `recorder at --interval ${TRACED_INTERVAL_MS} over ${TRACED_SECONDS} s, events covering processes (${traced.mode}): ${fmt(traced.cpuMsPerS)} ms CPU per s = ${fmt(traced.cpuMsPerS / (naiveCpuMs * 10), 3)} × the naive pass's CPU at 10 Hz (${fmt(naiveCpuMs * 10)} ms/s; goal ≤ 0.10 ×)`,
      `recorder at --interval ${TRACED_INTERVAL_MS}, sampling alone (--sources procfs): ${fmt(sampledOnly.cpuMsPerS)} ms CPU per s = ${fmt(sampledOnly.cpuMsPerS / (naiveCpuMs * 10), 3)} × the naive pass's CPU at 10 Hz`,
    ];
    return { name: 'sampling-cycle', lines, metrics };
  } finally {
    if (holder?.pid !== undefined) {
      try {
        process.kill(-holder.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * CPU of the composed recorder ticking at its own cadence for TRACED_SECONDS after a warm-up,
 * ms per second of wall time (this process does nothing else meanwhile).
 */
async function recorderCpu(tracing: boolean): Promise<{ cpuMsPerS: number; mode: string }> {
  const recorder = Recorder.start({
    intervalMs: TRACED_INTERVAL_MS,
    sources: tracing ? undefined : { tracefs: false, uprobes: false },
  });
  try {
    recorder.tick(Date.now());
    for (let i = 0; i < 10; i++) {
      await sleep(recorder.tickMs);
      recorder.tick(Date.now());
    }
    const c0 = cpuMs();
    const w0 = performance.now();
    while (performance.now() - w0 < TRACED_SECONDS * 1000) {
      const started = performance.now();
      recorder.tick(Date.now());
      await sleep(Math.max(0, recorder.tickMs - (performance.now() - started)));
    }
    return { cpuMsPerS: (cpuMs() - c0) / ((performance.now() - w0) / 1000), mode: recorder.modes.tracefs };
  } finally {
    recorder.stop(Date.now());
  }
}

if (isMain(import.meta.url)) {
  const r = await run();
  for (const l of r.lines) console.log(l);
}
