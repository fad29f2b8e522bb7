import type { EventFormat } from './event-format.js';
import { requireField } from './event-format.js';
import type { ArgvProbeFormat } from './kernel-events.js';

/**
 * The argv probe: a uprobe on the first instruction of an ELF interpreter (ld.so), where the
 * kernel has just laid out the new program's initial stack: argc at the stack pointer, then the
 * argv pointers, NULL, the envp pointers, NULL, the auxiliary vector, and the strings themselves.
 * The probe reads that memory before any code of the program runs, so a process of a millisecond
 * keeps its exact arguments, and nothing can have rewritten them yet (setproctitle).
 *
 * A probe has a fixed list of fetches, so slots past argc read the environment's pointers and
 * strings too: those are fetched (the kernel cannot stop at argc) but never decoded or recorded.
 * All strings of one hit share one page of kernel buffer; argv that does not fit is marked
 * incomplete and read from /proc/PID/cmdline while the process lives.
 */
export const ARGV_SLOTS = 32;

/** The fetch arguments of the probe, for uprobe_events (x86-64 and arm64: 8-byte stack slots). */
export function argvProbeArgs(slots = ARGV_SLOTS): string[] {
  const args = ['argc=+0($stack):u64'];
  for (let i = 0; i <= slots; i++) args.push(`p${i}=+${8 * (i + 1)}($stack):u64`);
  for (let i = 0; i < slots; i++) args.push(`a${i}=+0(+${8 * (i + 1)}($stack)):ustring`);
  return args;
}

/** The decoder's view of a probe's event format. */
export function argvProbeFormat(format: EventFormat, slots = ARGV_SLOTS): ArgvProbeFormat {
  const strings = [];
  const pointers = [];
  for (let i = 0; i < slots; i++) strings.push(requireField(format, `a${i}`));
  for (let i = 0; i <= slots; i++) pointers.push(requireField(format, `p${i}`));
  return { format, slots, argc: requireField(format, 'argc'), strings, pointers };
}
