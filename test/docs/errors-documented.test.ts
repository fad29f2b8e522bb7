import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES } from '../../src/errors.js';

const docs = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('every error code is documented in docs/errors.md, and nothing else is', () => {
  const documented = new Set([...docs.matchAll(/^## (POFR_[A-Z_]+)/gm)].map((m) => m[1]));
  for (const code of Object.keys(ERROR_CODES))
    assert.ok(documented.has(code), `${code} is missing from docs/errors.md`);
  for (const code of documented)
    assert.ok(code in ERROR_CODES, `docs/errors.md documents ${code}, which src/errors.ts lacks`);
});
