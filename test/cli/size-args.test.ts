import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseByteSize } from '../../src/cli/duration.js';
import { isPofrError } from '../../src/errors.js';

test('parseByteSize reads plain bytes and binary units, with or without iB/B', () => {
  assert.equal(parseByteSize('4096', '--spool-max'), 4096);
  assert.equal(parseByteSize('64K', '--spool-max'), 64 * 1024);
  assert.equal(parseByteSize('512M', '--spool-max'), 512 * 1024 ** 2);
  assert.equal(parseByteSize('512MiB', '--spool-max'), 512 * 1024 ** 2);
  assert.equal(parseByteSize('2g', '--spool-max'), 2 * 1024 ** 3);
  assert.equal(parseByteSize('1.5G', '--spool-max'), 1.5 * 1024 ** 3);
  assert.equal(parseByteSize('100B', '--spool-max'), 100);
});

test('parseByteSize refuses zero, negatives, unknown units and absurd sizes with a usage error', () => {
  for (const bad of ['0', '-1M', '12Q', 'M', '', '1e3', '9999999T']) {
    assert.throws(
      () => parseByteSize(bad, '--spool-max'),
      (e) => isPofrError(e) && e.code === 'POFR_USAGE' && e.message.includes('--spool-max'),
      bad,
    );
  }
});
