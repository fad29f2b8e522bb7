import type { PofrRecord } from '../../src/protocol/index.js';
import { execDeltaImage, LiveState, type LiveStateView } from '../../src/recorder/live-state.js';

/**
 * Turns a source's records back into whole images, as the server does: every process_exec_delta
 * becomes the process_exec it stands for, from a replay of the records on a copy of the state the
 * source started from. For tests that look at an exec's image in the records a source polls.
 */
export class WholeRecords {
  readonly #shadow = new LiveState();

  constructor(startedFrom: LiveStateView) {
    const files = [...startedFrom.processes.keys()].flatMap((k) => [
      ...(startedFrom.filesOf(k)?.values() ?? []),
    ]);
    this.#shadow.apply([
      {
        type: 'keyframe',
        t: 0,
        processes: [...startedFrom.processes.values()],
        files,
        endpoints: [...startedFrom.endpoints.values()],
      },
    ]);
  }

  expand(records: Iterable<PofrRecord>): PofrRecord[] {
    const out: PofrRecord[] = [];
    for (const r of records) {
      if (r.type === 'process_exec_delta') {
        const before = this.#shadow.processes.get(`${r.pid}:${r.start_ticks}`);
        out.push(before ? { type: 'process_exec', t: r.t, proc: execDeltaImage(before, r) } : r);
      } else {
        out.push(r);
      }
      this.#shadow.apply([r]);
    }
    return out;
  }
}
