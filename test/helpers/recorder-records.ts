import type { RecordOf } from '../../src/protocol/index.js';

/** Health records as a recorder sends them, with defaults for what a test does not care about. */
const HASH_A = 'a'.repeat(64);

export function startRecord(
  t: number,
  over: Partial<RecordOf<'recorder_start'>> = {},
): RecordOf<'recorder_start'> {
  return {
    type: 'recorder_start',
    t,
    version: '0.1.0',
    pid: 500,
    config_hash: HASH_A,
    config: { interval_ms: 1000, batch_ms: 5000, sources: ['procfs', 'inventory'] },
    sources: [{ name: 'procfs', mode: 'sampling', limited: false }],
    heartbeat_ms: 30_000,
    batch_ms: 5000,
    ...over,
  };
}

export function crashRecord(t: number, lastWrite: number): RecordOf<'recorder_crash'> {
  return {
    type: 'recorder_crash',
    t,
    pid: 600,
    last_write: lastWrite,
    crashed_pid: 500,
    crashed_boot_id: 'boot-1',
    rebooted: false,
    recovered_records: 5,
    recovered_seq_from: 2,
    recovered_seq_to: 2,
    journal_lost: 0,
    torn_bytes: 0,
  };
}

export function heartbeatRecord(
  t: number,
  over: Partial<RecordOf<'recorder_heartbeat'>> = {},
): RecordOf<'recorder_heartbeat'> {
  return {
    type: 'recorder_heartbeat',
    t,
    pid: 500,
    uptime_ms: 30_000,
    config_hash: HASH_A,
    heartbeat_ms: 30_000,
    batch_ms: 5000,
    spool_depth: 0,
    spool_bytes: 0,
    sources: [{ name: 'procfs', mode: 'sampling', limited: false }],
    ...over,
  };
}
