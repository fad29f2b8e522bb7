import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceHealth } from '../../src/recorder/index.js';
import { configHash, effectiveConfig, RecorderHealth } from '../../src/roles/client/recorder-health.js';

const log = () => {};
const health = (mode: SourceHealth['mode']): SourceHealth => ({
  mode,
  limited: false,
  denied: 0,
  lastCycleMs: 1,
  processes: 3,
});

test('the configuration hash covers every effective setting, whatever order they come in', () => {
  const dir = { stateDir: '/var/lib/pofr', log };
  const a = effectiveConfig(dir);
  const same = effectiveConfig({
    ...dir,
    intervalMs: 1000,
    batchMs: 5000,
    sources: { tracefs: true, uprobes: true },
  });
  assert.equal(configHash(a), configHash(same), 'defaults spelt out are the same configuration');
  assert.equal(configHash(a), configHash(Object.fromEntries(Object.entries(a).reverse())));
  assert.match(configHash(a), /^[0-9a-f]{64}$/);
  assert.deepEqual(a.sources, ['tracefs', 'uprobes', 'procfs']);
  const changed = [
    effectiveConfig({ ...dir, intervalMs: 5000 }),
    effectiveConfig({ ...dir, journal: false }),
    effectiveConfig({ ...dir, heartbeatMs: 600_000 }),
    effectiveConfig({ ...dir, sources: { tracefs: false, uprobes: false } }),
    effectiveConfig({ ...dir, traceBufferKb: 64 }),
  ];
  for (const c of changed) assert.notEqual(configHash(c), configHash(a));
});

test('a start record first, then one heartbeat per period on the grid of the start, then a stop record', () => {
  const spool = { depth: () => 2, sizeBytes: () => 4096 };
  const h = new RecorderHealth({
    version: '9.9.9',
    config: { interval_ms: 100 },
    heartbeatMs: 1000,
    batchMs: 100,
    // As Recorder.health() gives them: a source that does not run says so, with a reason.
    sources: () => ({ procfs: health('sampling'), tracefs: { mode: 'unavailable', reason: 'not root' } }),
    spool,
    pid: 4242,
  });
  const T = 1_800_000_000_000_000;
  const [start] = h.poll(T);
  assert.deepEqual(start, {
    type: 'recorder_start',
    t: T,
    version: '9.9.9',
    pid: 4242,
    config_hash: configHash({ interval_ms: 100 }),
    config: { interval_ms: 100 },
    sources: [
      { name: 'procfs', mode: 'sampling', limited: false },
      { name: 'tracefs', mode: 'unavailable', limited: false },
    ],
    heartbeat_ms: 1000,
    batch_ms: 100,
  });
  const kinds: string[] = [];
  for (let ms = 100; ms <= 3500; ms += 100)
    for (const r of h.poll(T + ms * 1000)) kinds.push(`${r.type}@${ms}`);
  assert.deepEqual(kinds, ['recorder_heartbeat@1000', 'recorder_heartbeat@2000', 'recorder_heartbeat@3000']);
  // A stalled cycle does not send a burst of heartbeats, and the grid stays.
  assert.equal(h.poll(T + 7_300_000).length, 1);
  assert.equal(h.poll(T + 7_900_000).length, 0);
  const [beat] = h.poll(T + 8_000_000);
  assert.ok(beat.type === 'recorder_heartbeat');
  assert.equal(beat.uptime_ms, 8000);
  assert.equal(beat.spool_depth, 2);
  assert.deepEqual(h.stopRecord(T + 9_000_000, { reason: 'deregister', signal: 'SIGTERM' }), {
    type: 'recorder_stop',
    t: T + 9_000_000,
    pid: 4242,
    reason: 'deregister',
    signal: 'SIGTERM',
  });
});
