import { readFileSync } from 'node:fs';

/**
 * Converts trace-clock times (the instance runs on `boot`: nanoseconds since boot, suspend
 * included, the clock process start times in /proc/PID/stat count in) to wall-clock microseconds.
 *
 * Node has no CLOCK_BOOTTIME, so the link is made through CLOCK_MONOTONIC (process.hrtime): a line
 * written to the instance's trace_marker comes back stamped in boot time, and the monotonic time
 * around the write pins the two clocks together to a few microseconds. Monotonic to wall uses
 * performance.timeOrigin (microsecond precision), re-based on Date.now() if the wall clock was
 * stepped (NTP, an operator) by more than 20 ms.
 */
export class TraceClock {
  #bootMinusMonoNs: number;
  #wallMinusMonoUs: number;
  #calibrated = false;

  constructor(procRoot = '/proc') {
    this.#wallMinusMonoUs = TraceClock.#wallNowUs() - monoNowNs() / 1000;
    // Until the first marker comes back: /proc/uptime, good to its 10 ms.
    let uptimeNs = monoNowNs();
    try {
      uptimeNs = Number.parseFloat(readFileSync(`${procRoot}/uptime`, 'latin1')) * 1e9;
    } catch {
      // Without /proc/uptime the clocks are taken as equal until calibrated.
    }
    this.#bootMinusMonoNs = uptimeNs - monoNowNs();
  }

  static #wallNowUs(): number {
    return (performance.timeOrigin + performance.now()) * 1000;
  }

  get calibrated(): boolean {
    return this.#calibrated;
  }

  /** A marker written between monotonic `beforeNs` and `afterNs` came back stamped `bootNs`. */
  calibrate(bootNs: number, beforeNs: number, afterNs: number): void {
    this.#bootMinusMonoNs = bootNs - (beforeNs + afterNs) / 2;
    this.#calibrated = true;
  }

  /** Follows a step of the wall clock; true when there was one. */
  followWallClock(): boolean {
    const expected = monoNowNs() / 1000 + this.#wallMinusMonoUs;
    const actual = Date.now() * 1000;
    if (Math.abs(actual - expected) <= 20_000) return false;
    this.#wallMinusMonoUs += actual - expected;
    return true;
  }

  /** Wall-clock microseconds of a trace-clock time. */
  wallMicros(bootNs: number): number {
    return Math.round((bootNs - this.#bootMinusMonoNs) / 1000 + this.#wallMinusMonoUs);
  }

  /** The trace clock now (an estimate, as good as the calibration). */
  bootNowNs(): number {
    return monoNowNs() + this.#bootMinusMonoNs;
  }
}

export function monoNowNs(): number {
  return Number(process.hrtime.bigint());
}
