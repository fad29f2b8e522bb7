import type { BenchResult } from './bench-result.js';
import { run as clientPackage } from './client-package.js';
import { run as crashJournal } from './crash-journal.js';
import { run as detectLive } from './detect-live.js';
import { run as execCapture } from './exec-capture.js';
import { run as fileCapture } from './file-capture.js';
import { run as fleet } from './fleet.js';
import { run as ingestThroughput } from './ingest-throughput.js';
import { run as recordedHourSize } from './recorded-hour-size.js';
import { run as samplingCycle } from './sampling-cycle.js';
import { run as storeScale } from './store-scale.js';
import { run as webApiLatency } from './web-api-latency.js';

/** `npm run bench`: every benchmark in turn, each printing what it measured beside its baseline. */
const benches: [string, () => Promise<BenchResult>][] = [
  ['sampling-cycle', samplingCycle],
  ['exec-capture', execCapture],
  ['file-capture', fileCapture],
  ['ingest-throughput', ingestThroughput],
  ['store-scale', storeScale],
  ['recorded-hour-size', recordedHourSize],
  ['client-package', clientPackage],
  ['crash-journal', crashJournal],
  ['fleet', fleet],
  ['web-api-latency', webApiLatency],
  ['detect-live', detectLive],
];

const only = process.argv.slice(2);
const results: BenchResult[] = [];
console.log(`pofr benchmarks — node ${process.version}, ${new Date().toISOString()}`);
for (const [name, fn] of benches) {
  if (only.length > 0 && !only.includes(name)) continue;
  console.log(`\n## ${name}`);
  const r = await fn();
  for (const l of r.lines) console.log(l);
  results.push(r);
}
console.log(`\nJSON ${JSON.stringify(results.map((r) => ({ name: r.name, metrics: r.metrics })))}`);
