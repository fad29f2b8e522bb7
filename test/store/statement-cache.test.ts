import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { preparingOnce } from '../../src/store/dialects/sqlite/sqlite-dialect.js';

test('SQLite statements are prepared once per text, and what is kept is bounded in count and in text', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pofr-stmt-cache-'));
  const conn = new Database(join(dir, 'db.sqlite'));
  t.after(() => {
    conn.close();
    rmSync(dir, { recursive: true, force: true });
  });
  conn.exec('CREATE TABLE t (a INTEGER, b TEXT, c TEXT, d TEXT)');
  const db = preparingOnce(conn);
  const insert = (rows: number) =>
    `INSERT INTO t (a, b, c, d) VALUES ${Array(rows).fill('(?, ?, ?, ?)').join(', ')}`;

  // The same text: the same statement.
  assert.equal(db.prepare(insert(3)), db.prepare(insert(3)));
  // A statement still iterating is not handed out again.
  conn.exec("INSERT INTO t VALUES (1, 'x', 'y', 'z'), (2, 'x', 'y', 'z')");
  const select = 'SELECT a FROM t ORDER BY a';
  const it = db.prepare(select).iterate();
  it.next();
  assert.notEqual(db.prepare(select), db.prepare(select));
  it.return?.();

  // Every multi-row shape a year of varied batches could make: far fewer are kept.
  for (let cols = 1; cols <= 8; cols++) {
    for (let rows = 1; rows <= 100; rows++) {
      const marks = `(${Array(cols).fill('?').join(', ')})`;
      db.prepare(
        `INSERT INTO t (${['a', 'b', 'c', 'd', 'a', 'b', 'c', 'd'].slice(0, Math.min(cols, 4)).join(', ')}) SELECT ${Array(Math.min(cols, 4)).fill('1').join(', ')} FROM (VALUES ${Array(rows).fill(marks).join(', ')})`,
      );
    }
  }
  const kept = db.cached();
  assert.ok(kept.statements <= 512, `${kept.statements} statements kept`);
  assert.ok(kept.chars <= 256 * 1024, `${kept.chars} characters kept`);
  assert.ok(kept.statements > 50, 'the most recent ones are kept');
  // The most recently used survives a flood of others.
  const recent = db.prepare(insert(3));
  assert.equal(db.prepare(insert(3)), recent);
});
