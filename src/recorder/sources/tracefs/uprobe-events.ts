import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * uprobe_events is global to the host, not per instance: probes are defined here, under a group
 * of the recorder's own, enabled only in its instance, and removed on exit. The file is only ever
 * opened for appending: opened with O_TRUNC it would delete every uprobe on the host.
 */

export interface UprobeDefinition {
  readonly group: string;
  readonly event: string;
  readonly path: string;
  /** File offset of the probed instruction. */
  readonly offset: number;
  /** Fetch arguments, e.g. `argc=+0($stack):u64`. */
  readonly args: readonly string[];
}

/** Defines a uprobe; on refusal, the error names the probe and what the kernel said. */
export function addUprobe(root: string, probe: UprobeDefinition): void {
  const line = `p:${probe.group}/${probe.event} ${probe.path}:0x${probe.offset.toString(16)} ${probe.args.join(' ')}\n`;
  const err = appendLine(root, line);
  if (err !== null) {
    throw new Error(
      `the kernel refused uprobe ${probe.group}/${probe.event} on ${probe.path}:0x${probe.offset.toString(16)}: ${err}`,
    );
  }
}

/** Removes one probe; null on success, else why not (e.g. still enabled somewhere: EBUSY). */
export function removeUprobe(root: string, group: string, event: string): string | null {
  return appendLine(root, `-:${group}/${event}\n`);
}

export interface DefinedUprobe {
  readonly group: string;
  readonly event: string;
  readonly path: string;
}

/** The probes defined on the host now. */
export function listUprobes(root: string): DefinedUprobe[] {
  let text: string;
  try {
    text = readFileSync(join(root, 'uprobe_events'), 'latin1');
  } catch {
    return [];
  }
  const out: DefinedUprobe[] = [];
  for (const line of text.split('\n')) {
    const m = /^[pr]:([^/\s]+)\/(\S+)\s+(\S+?):0x[0-9a-f]+/.exec(line);
    if (m) out.push({ group: m[1], event: m[2], path: m[3] });
  }
  return out;
}

/**
 * Hits per probe from `uprobe_profile`. Its lines name the event without its group
 * (`<path> <event> <hits>`), which is why the recorder's event names carry its owner token.
 */
export function readUprobeHits(root: string): Map<string, number> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = readFileSync(join(root, 'uprobe_profile'), 'latin1');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length < 3) continue;
    const hits = Number(parts[parts.length - 1]);
    if (Number.isInteger(hits)) out.set(parts[parts.length - 2], hits);
  }
  return out;
}

function appendLine(root: string, line: string): string | null {
  const path = join(root, 'uprobe_events');
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND);
  } catch (e) {
    return (e as Error).message;
  }
  try {
    writeSync(fd, line);
    return null;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    return `${why}${lastTraceError(root)}`;
  } finally {
    closeSync(fd);
  }
}

/** The kernel's explanation of the last refused definition (`error_log`), if it kept one. */
function lastTraceError(root: string): string {
  try {
    const lines = readFileSync(join(root, 'error_log'), 'latin1').trim().split('\n');
    const tail = lines.slice(-3).join(' ').replace(/\s+/g, ' ').trim();
    return tail ? ` (${tail})` : '';
  } catch {
    return '';
  }
}
