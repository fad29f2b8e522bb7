/**
 * A process image's lifetime class, for "what was alive at instant T" (start <= T < end): a b-tree
 * bounds start or end, not both, so over a long record either side of T is long. Indexed by
 * (host_id, class, start) (migration 0016), an image of class k that was alive at T started in
 * (T − LIFETIME_BOUNDS_US[k], T]: each class is read over a window as long as its lifetimes, so a
 * tree costs a few times the processes alive then, not the history before or after it. Images
 * ended after the last bound, and those still running, are read from T back to the record's start:
 * few of them.
 *
 * Bounds grow tenfold from one second to about 11.6 days.
 */
export const LIFETIME_BOUNDS_US: readonly number[] = Object.freeze([1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12]);

/** The class of images that ended after living LIFETIME_BOUNDS_US's last bound or more. */
export const LIFETIME_LONGEST = LIFETIME_BOUNDS_US.length;
/** The class of images still running (end IS NULL). */
export const LIFETIME_RUNNING = 9;

/**
 * The class as an SQL expression over the given column references, e.g. `"end"` and `start` in the
 * index, `p."end"` and `p.start` in a query. The index and the queries must spell the same
 * expression, constants as literals (a bound parameter would not match the index's expression).
 */
export function lifetimeClassSql(end: string, start: string): string {
  const steps = LIFETIME_BOUNDS_US.map((b, k) => `WHEN ${end} - ${start} < ${b} THEN ${k}`).join(' ');
  return `(CASE WHEN ${end} IS NULL THEN ${LIFETIME_RUNNING} ${steps} ELSE ${LIFETIME_LONGEST} END)`;
}
