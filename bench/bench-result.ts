/** What every benchmark returns: printable lines and the raw figures (for docs/benchmarks.md). */
export interface BenchResult {
  readonly name: string;
  readonly lines: readonly string[];
  readonly metrics: Readonly<Record<string, number>>;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function isMain(metaUrl: string): boolean {
  return process.argv[1] !== undefined && new URL(metaUrl).pathname === process.argv[1];
}
