import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

/**
 * A `|` inside a table cell must be escaped (`\|`), even inside backticks, or the row gets more
 * cells than its header and the page no longer renders as a table (`approve|revoke|remove` did).
 */
const ROOT = new URL('../../../', import.meta.url).pathname;

function cellCount(row: string): number {
  return row.trim().split(/(?<!\\)\|/).length - 2;
}

test('every row of every table in README.md and docs/ has as many cells as its header', () => {
  const files = [
    'README.md',
    ...readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  const problems: string[] = [];
  for (const file of files) {
    const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
    let header: number | null = null;
    lines.forEach((line, i) => {
      if (!line.startsWith('|')) {
        header = null;
        return;
      }
      const n = cellCount(line);
      if (header === null) header = n;
      else if (n !== header) problems.push(`${file}:${i + 1} has ${n} cells, its header ${header}`);
    });
  }
  assert.deepEqual(problems, []);
});
