import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

/**
 * The data flows one way (source → diff → batch → spool → transport → verify → ingest → store →
 * query → detect); this test enforces STYLE.md's import table so a module never reaches into a later stage or
 * another folder's internals.
 */
const SRC = new URL('../../../src/', import.meta.url).pathname;

const MAY_IMPORT: Record<string, readonly string[]> = {
  protocol: [],
  recorder: ['protocol'],
  spool: ['protocol'],
  transport: ['protocol'],
  store: [],
  enrich: [],
  ingest: ['protocol', 'store', 'enrich'],
  query: ['store'],
  // Detection compiles Sigma rules to SQL over the store's tables and runs them.
  detect: ['store'],
  roles: ['protocol', 'recorder', 'spool', 'transport', 'store', 'enrich', 'ingest', 'query', 'detect'],
  web: ['protocol', 'store', 'enrich', 'ingest', 'query', 'roles'],
  // Packaging builds the client role into one file and the server into a .deb: it needs only the
  // client role's file names and configuration format.
  package: ['roles'],
  cli: [
    'protocol',
    'recorder',
    'spool',
    'transport',
    'store',
    'enrich',
    'ingest',
    'query',
    'roles',
    'package',
    'web',
    'detect',
  ],
};

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

test('modules import only the stages STYLE.md allows, and only through their index', () => {
  const problems: string[] = [];
  for (const file of tsFiles(SRC)) {
    const rel = relative(SRC, file);
    const folder = rel.includes('/') ? rel.split('/')[0] : null;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)[^'"]*from\s+'(\.[^']+)'/gm)) {
      const target = relative(SRC, join(file, '..', m[1]));
      if (target.startsWith('..')) continue;
      const targetFolder = target.includes('/') ? target.split('/')[0] : null;
      if (targetFolder === null || targetFolder === folder) continue;
      if (folder === null) {
        problems.push(`${rel} (top level) imports ${target}`);
        continue;
      }
      if (!(folder in MAY_IMPORT)) problems.push(`${rel}: folder ${folder} has no import rule`);
      else if (!MAY_IMPORT[folder].includes(targetFolder))
        problems.push(`${rel} imports ${target}: ${folder} may not import ${targetFolder}`);
      else if (targetFolder !== 'roles' && !/^[a-z]+\/index\.js$/.test(target)) {
        problems.push(`${rel} imports ${target}: go through ${targetFolder}/index.js`);
      }
    }
  }
  assert.deepEqual(problems, []);
});
