import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeInstanceDir } from './trace-instance.js';
import { listUprobes, removeUprobe } from './uprobe-events.js';

/** Where tracefs is, or why the recorder cannot use it (said once, then it samples /proc). */
export type TracefsLocation =
  | { readonly ok: true; readonly root: string }
  | { readonly ok: false; readonly reason: string };

export const DEFAULT_TRACEFS_ROOTS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'] as const;

/**
 * Finds a usable tracefs. /sys/kernel/tracing can be present but empty until tracefs is mounted
 * there; as root the recorder mounts it itself (the kernel keeps one tracefs, so this changes
 * nothing for anyone else tracing on the host).
 */
export function locateTracefs(roots: readonly string[] = DEFAULT_TRACEFS_ROOTS): TracefsLocation {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: `not root (uid ${process.getuid()}): kernel tracing needs root` };
  }
  const reasons: string[] = [];
  for (const root of roots) {
    if (!existsSync(root)) {
      reasons.push(`${root} does not exist`);
      continue;
    }
    if (!existsSync(join(root, 'instances'))) {
      const mounted = mountTracefs(root);
      if (mounted !== null) {
        reasons.push(mounted);
        continue;
      }
    }
    if (!existsSync(join(root, 'instances'))) {
      reasons.push(`${root} has no instances/ directory (tracefs without instance support)`);
      continue;
    }
    return { ok: true, root };
  }
  return { ok: false, reason: reasons.join('; ') };
}

function mountTracefs(root: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tracefs', 'nodev', root], { stdio: 'pipe', timeout: 10_000 });
    return null;
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    const detail = err.stderr?.toString('utf8').trim() || err.message;
    return `tracefs is not mounted at ${root} and mounting it failed: ${detail}`;
  }
}

const OWNER = /^pofr_(\d+)_(\d+)_(\d+)$/;
let instanceCounter = 0;

/**
 * A name for this process's next tracing instance and uprobe group: `pofr_<pid>_<start ticks>_<n>`.
 * The pid and its start time make an owner that outlives nothing: once that process is gone (even if
 * its pid was reused), whatever carries its name is stale and any later recorder removes it.
 */
export function ownerToken(procRoot = '/proc'): string {
  return `pofr_${process.pid}_${startTicksOf(procRoot, process.pid) ?? 0}_${instanceCounter++}`;
}

function startTicksOf(procRoot: string, pid: number): number | null {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isInteger(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** Whether the process that a `pofr_<pid>_<ticks>_<n>` name belongs to still runs. */
export function ownerAlive(name: string, procRoot = '/proc'): boolean {
  const m = OWNER.exec(name);
  if (!m) return true;
  return startTicksOf(procRoot, Number(m[1])) === Number(m[2]);
}

export interface StaleCleanup {
  readonly instances: string[];
  readonly probes: string[];
  /** What could not be removed, with why. */
  readonly failed: string[];
}

/**
 * Removes the tracing instances and uprobe groups left by recorders that died without cleaning up
 * (SIGKILL, a power cut). Only pofr's own names whose owner is gone: another live recorder's
 * instance, and anything that is not pofr's, are left alone. Instances go first: a probe can only
 * be removed once no instance has it enabled.
 */
export function cleanStaleTracing(root: string, procRoot = '/proc'): StaleCleanup {
  const instances: string[] = [];
  const probes: string[] = [];
  const failed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(join(root, 'instances'));
  } catch {
    names = [];
  }
  for (const name of names) {
    if (!OWNER.test(name) || ownerAlive(name, procRoot)) continue;
    if (removeInstanceDir(join(root, 'instances', name))) instances.push(name);
    else failed.push(`instance ${name}: still busy`);
  }
  for (const probe of listUprobes(root)) {
    if (!OWNER.test(probe.group) || ownerAlive(probe.group, procRoot)) continue;
    const err = removeUprobe(root, probe.group, probe.event);
    if (err === null) probes.push(`${probe.group}/${probe.event}`);
    else failed.push(`uprobe ${probe.group}/${probe.event}: ${err}`);
  }
  return { instances, probes, failed };
}
