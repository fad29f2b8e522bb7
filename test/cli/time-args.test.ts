import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatTime, parseTimeArg } from '../../src/cli/time-args.js';

const T = Date.UTC(2026, 10, 24, 20, 15, 0) * 1000; // 2026-11-24T20:15:00Z in µs

test('parseTimeArg reads ISO 8601 UTC with up to microsecond fractions', () => {
  assert.equal(parseTimeArg('2026-11-24T20:15:00Z'), T);
  assert.equal(parseTimeArg('2026-11-24T20:15Z'), T);
  assert.equal(parseTimeArg('2026-11-24t20:15:00z'), T);
  assert.equal(parseTimeArg('2026-11-24 20:15:00Z'), T);
  assert.equal(parseTimeArg('2026-11-24T20:15:00.5Z'), T + 500_000);
  assert.equal(parseTimeArg('2026-11-24T20:15:00.123456Z'), T + 123_456);
  // nanoseconds are cut to microseconds, never rounded into the next one
  assert.equal(parseTimeArg('2026-11-24T20:15:00.123456999Z'), T + 123_456);
});

test('parseTimeArg applies offsets and reads a time without zone as local time', () => {
  assert.equal(parseTimeArg('2026-11-24T21:15:00+01:00'), T);
  assert.equal(parseTimeArg('2026-11-24T14:45:00-0530'), T);
  assert.equal(parseTimeArg('2026-11-24T22:15:00.000001+02'), T + 1);
  assert.equal(parseTimeArg('2026-11-24T20:15:00'), new Date(2026, 10, 24, 20, 15, 0).getTime() * 1000);
  assert.equal(parseTimeArg('2026-11-24'), new Date(2026, 10, 24).getTime() * 1000);
});

test('parseTimeArg reads relative times against now', () => {
  const now = T;
  assert.equal(parseTimeArg('-30s', now), T - 30_000_000);
  assert.equal(parseTimeArg('-15m', now), T - 900_000_000);
  assert.equal(parseTimeArg('-2h', now), T - 7_200_000_000);
  assert.equal(parseTimeArg('-7d', now), T - 7 * 86_400_000_000);
  assert.equal(parseTimeArg('-1w', now), T - 604_800_000_000);
  assert.equal(parseTimeArg('now', now), T);
  const before = Date.now() * 1000;
  const rel = parseTimeArg('-1h');
  assert.ok(rel >= before - 3_600_000_000 && rel <= Date.now() * 1000 - 3_600_000_000);
});

test('parseTimeArg refuses anything else with POFR_TIME_FORMAT, naming the input and the forms', () => {
  for (const bad of [
    'yesterday',
    '15m',
    '-15x',
    '2026-13-01',
    '2026-02-30',
    '2026-11-24T25:00Z',
    '',
    '2026-11-24T20:15+1',
  ]) {
    assert.throws(
      () => parseTimeArg(bad),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POFR_TIME_FORMAT');
        assert.ok(e.message.includes(`"${bad}"`), e.message);
        assert.match(e.message, /ISO 8601.*-15m/);
        return true;
      },
    );
  }
  assert.equal(parseTimeArg('2028-02-29T00:00:00Z'), Date.UTC(2028, 1, 29) * 1000);
});

test('formatTime writes ISO 8601 UTC with exactly six fractional digits, and parses back', () => {
  assert.equal(formatTime(T), '2026-11-24T20:15:00.000000Z');
  assert.equal(formatTime(T + 123_456), '2026-11-24T20:15:00.123456Z');
  assert.equal(formatTime(T + 7), '2026-11-24T20:15:00.000007Z');
  assert.equal(formatTime(0), '1970-01-01T00:00:00.000000Z');
  assert.equal(formatTime(null), null);
  for (const us of [T, T + 1, T + 999_999, 1_795_637_700_123_456])
    assert.equal(parseTimeArg(formatTime(us)!), us);
});
