import type { Creds, PofrRecord, ProcRef } from '../protocol/index.js';
import type { LiveState } from './live-state.js';
import type { EventClock } from './process-events.js';
import type { SyscallArgsEvent, SyscallExitEvent } from './sources/tracefs/kernel-events.js';

/** The id-changing system calls followed, with their argument names in the kernel's events. */
export const CRED_CALLS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  setuid: ['uid'],
  setreuid: ['ruid', 'euid'],
  setresuid: ['ruid', 'euid', 'suid'],
  setgid: ['gid'],
  setregid: ['rgid', 'egid'],
  setresgid: ['rgid', 'egid', 'sgid'],
});

export interface CredEventsOptions {
  readonly live: LiveState;
  readonly clock: EventClock;
  readonly ownerOfTid: (tid: number) => ProcRef | null;
}

const KEEP = 0xffff_ffff;

/**
 * A process changing its ids without an exec: the call's arguments (`sys_enter_set*id`) joined per
 * thread to its success (`sys_exit_set*id`, 0), applied to the ids the process had. glibc makes
 * every thread of a process call the kernel (so that all agree): only the first call that changes
 * anything is a record. setuid/setgid by a process whose effective uid is 0 set the real id too,
 * as the kernel does for a caller with CAP_SETUID/CAP_SETGID (a non-root caller holding the
 * capability is taken as unprivileged: only its effective id changes).
 */
export class CredEvents {
  readonly counts = { changes: 0 };
  readonly #o: CredEventsOptions;
  readonly #pending = new Map<number, SyscallArgsEvent>();

  constructor(opts: CredEventsOptions) {
    this.#o = opts;
  }

  entered(ev: SyscallArgsEvent): void {
    if (this.#pending.size >= 65_536) this.#pending.clear();
    this.#pending.set(ev.tid, ev);
  }

  exited(ev: SyscallExitEvent, out: PofrRecord[]): void {
    const call = this.#pending.get(ev.tid);
    if (call === undefined || call.call !== ev.call) return;
    this.#pending.delete(ev.tid);
    if (ev.ret !== 0) return;
    const owner = this.#o.ownerOfTid(ev.tid);
    if (owner === null) return;
    const img = this.#o.live.processOfPid(owner.pid);
    if (img === undefined || img.start_ticks !== owner.start_ticks) return;
    const old: Creds = { ruid: img.ruid, euid: img.euid, rgid: img.rgid, egid: img.egid };
    const next = applyCall(old, call.call, call.args);
    if (
      next.ruid === old.ruid &&
      next.euid === old.euid &&
      next.rgid === old.rgid &&
      next.egid === old.egid
    ) {
      return;
    }
    this.counts.changes++;
    const r: PofrRecord = {
      type: 'cred_change',
      t: this.#o.clock.wallMicros(ev.ts),
      pid: owner.pid,
      start_ticks: owner.start_ticks,
      call: call.call,
      old,
      new: next,
    };
    this.#o.live.apply([r]);
    out.push(r);
  }
}

/** The ids after a successful call, from those before and its arguments. */
export function applyCall(old: Creds, call: string, args: readonly number[]): Creds {
  const pick = (arg: number | undefined, was: number) => (arg === undefined || arg === KEEP ? was : arg);
  const privileged = old.euid === 0;
  switch (call) {
    case 'setuid':
      return { ...old, ruid: privileged ? args[0] : old.ruid, euid: args[0] };
    case 'setgid':
      return { ...old, rgid: privileged ? args[0] : old.rgid, egid: args[0] };
    case 'setreuid':
    case 'setresuid':
      return { ...old, ruid: pick(args[0], old.ruid), euid: pick(args[1], old.euid) };
    case 'setregid':
    case 'setresgid':
      return { ...old, rgid: pick(args[0], old.rgid), egid: pick(args[1], old.egid) };
    default:
      return old;
  }
}
