import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { escapeControl, printRows } from '../../src/cli/output.js';

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

const columns = [
  { key: 'pid', header: 'PID', align: 'right' as const },
  { key: 'cmdline', header: 'COMMAND', maxWidth: 20 },
];

test('JSON mode prints one parseable object per line and nothing else', () => {
  const out = new Sink();
  const err = new Sink();
  const rows = [
    { pid: 1, cmdline: 'a\nb\u001b[2J', argv: ['a\nb'], end: null },
    { pid: 22, cmdline: 'x', argv: [], end: '2026-11-24T20:15:00.000000Z' },
  ];
  printRows(rows, { json: true, columns }, out, err);
  const lines = out.text.split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 2);
  assert.deepEqual(
    lines.map((l) => JSON.parse(l)),
    rows,
  );
  assert.equal(err.text, '');
  const empty = new Sink();
  printRows([], { json: true, columns }, empty, err);
  assert.equal(empty.text, '');
  assert.equal(err.text, '');
});

test('table mode aligns columns, right-aligns numbers and cuts long cells with …', () => {
  const out = new Sink();
  printRows(
    [
      { pid: 1, cmdline: 'init' },
      { pid: 4242, cmdline: 'a-very-long-command-line-indeed --with-flags' },
    ],
    { json: false, columns },
    out,
  );
  assert.equal(out.text, [' PID  COMMAND', '   1  init', '4242  a-very-long-command…', ''].join('\n'));
});

test('table mode shows control characters as escapes, so a hostile value cannot break the table or the terminal', () => {
  const out = new Sink();
  const hostile = 'evil\nPID  COMMAND\tx\u001b[31mred\u0007\r\u009b2J\u202eexe.txt\u007f';
  printRows(
    [{ pid: 1, cmdline: hostile }],
    { json: false, columns: [{ key: 'cmdline', header: 'C', maxWidth: 200 }] },
    out,
  );
  const lines = out.text.split('\n');
  assert.equal(lines.length, 3); // header, one row, final newline
  assert.equal(lines[1], 'evil\\nPID  COMMAND\\tx\\x1b[31mred\\x07\\r\\x9b2J\\u202eexe.txt\\x7f');
  assert.doesNotMatch(out.text.replaceAll('\n', ''), /[\u0000-\u001f\u007f-\u009f\u202e]/);
  assert.equal(escapeControl('plain /tmp/ünïcode ✓'), 'plain /tmp/ünïcode ✓');
});

test('an empty table prints "(no rows)" on stderr and nothing on stdout', () => {
  const out = new Sink();
  const err = new Sink();
  printRows([], { json: false, columns }, out, err);
  assert.equal(out.text, '');
  assert.equal(err.text, '(no rows)\n');
});

test('table mode prints null as - and arrays as words', () => {
  const out = new Sink();
  printRows(
    [{ a: null, b: ['x', 'y'] }],
    {
      json: false,
      columns: [
        { key: 'a', header: 'A' },
        { key: 'b', header: 'B' },
      ],
    },
    out,
  );
  assert.equal(out.text, 'A  B\n-  x y\n');
});
