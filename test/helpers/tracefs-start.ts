import { LiveState, TracefsSource } from '../../src/recorder/index.js';

/**
 * Prints, as one JSON line, whether the tracefs source starts for the user running it: a test runs
 * this as `nobody` (test/helpers/run-as-nobody.ts) to see the recorder say why it cannot trace.
 */
const started = TracefsSource.start({ live: new LiveState() });
if (started.ok) started.source.close();
process.stdout.write(`${JSON.stringify(started.ok ? { ok: true } : started)}\n`);
