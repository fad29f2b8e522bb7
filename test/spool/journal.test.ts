import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GENESIS_HASH, type PofrRecord } from '../../src/protocol/index.js';
import { CrashJournal, type JournalHeader } from '../../src/spool/index.js';
import { TINY_DISK_SKIP, withTinyDisk } from '../helpers/tiny-disk.js';
import { proc } from '../ingest/host-fixture.js';

const base = mkdtempSync(join(tmpdir(), 'pofr-journal-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(base, `journal-${++n}`);

const T0 = 1_800_000_000_000_000;
const SEC = 1_000_000;
const HEADER: JournalHeader = {
  host_id: 'h1',
  boot_id: 'boot-a',
  pid: 4242,
  started: T0,
  base_seq: 0,
  base_hash: GENESIS_HASH,
};
const exit = (t: number, pid = 100): PofrRecord => ({ type: 'process_exit', t, pid, start_ticks: 7 });
const bigArgv = (t: number, bytes: number): PofrRecord => ({
  type: 'process_start',
  t,
  proc: proc(1, 1, { argv: ['x'.repeat(bytes)] }),
});

test('what was written every cycle reads back after the writer dies, with the time it last wrote', () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: null });
  j.write(T0 + 1, [exit(T0 + 1, 1), exit(T0 + 1, 2)]);
  j.write(T0 + 2, []);
  j.write(T0 + 3, [exit(T0 + 3, 3)]);
  j.write(T0 + 4 * SEC, []);
  j.write(T0 + 4 * SEC + 100_000, []); // within a second of the last frame: not written
  // No stop and no close: what SIGKILL leaves (the bytes are in the page cache).
  const c = CrashJournal.read(path)!;
  assert.deepEqual(c.header, HEADER);
  assert.deepEqual(
    c.records.map((r) => (r.type === 'process_exit' ? r.pid : -1)),
    [1, 2, 3],
  );
  assert.equal(c.lastWrite, T0 + 4 * SEC, 'an empty cycle still says the recorder was alive, once a second');
  assert.equal(c.stopped, null);
  assert.equal(c.lost, null);
  assert.equal(c.tornBytes, 0);
  assert.equal(j.status().unsealed, 3);
  j.close();
  assert.equal(CrashJournal.read(join(base, 'none')), null, 'no journal: nothing to recover');
});

test('a seal empties the journal at the new chain head, keeping the gap record still owed', () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: null });
  j.write(T0 + 1, [exit(T0 + 1)]);
  const gap: PofrRecord = { type: 'gap', t: T0 + 2, from: T0, to: T0 + 1, reason: 'spool full', dropped: 4 };
  j.sealed({ seq: 7, hash: 'ab'.repeat(32) }, T0 + 2, [gap]);
  const c = CrashJournal.read(path)!;
  assert.equal(c.header?.base_seq, 7);
  assert.equal(c.header?.base_hash, 'ab'.repeat(32));
  assert.deepEqual(c.records, [gap]);
  j.stop(T0 + 3, 'SIGTERM');
  const stopped = CrashJournal.read(path)!;
  assert.deepEqual(stopped.stopped, { t: T0 + 3, reason: 'SIGTERM' });
  assert.deepEqual(stopped.records, [gap], 'a clean stop still leaves what is owed for the next start');
});

test('past its bound the journal counts what it could not keep and stays within the bound plus one line', () => {
  const path = fresh();
  const maxBytes = 4096;
  const j = CrashJournal.open(path, HEADER, { maxBytes, syncMs: null });
  j.write(T0 + 1, [exit(T0 + 1, 1)]);
  for (let i = 2; i < 40; i++) j.write(T0 + i, [bigArgv(T0 + i, 600)]);
  j.write(T0 + 40 * SEC, []);
  const size = statSync(path).size;
  assert.ok(size <= maxBytes + 300, `journal is ${size} bytes`);
  const c = CrashJournal.read(path)!;
  const kept = c.records.length;
  assert.ok(kept >= 2 && kept < 39, `kept ${kept} records`);
  assert.equal(c.lost?.dropped, 39 - kept, 'every record not kept is counted');
  assert.match(c.lost?.reason ?? '', /4096-byte bound; raise --journal-max/);
  assert.equal(c.lastWrite, T0 + 40 * SEC, 'the loss line still says when the recorder was alive');
  assert.equal(j.status().lost?.dropped, 39 - kept);
  j.sealed({ seq: 1, hash: 'cd'.repeat(32) }, T0 + 41, []);
  assert.equal(CrashJournal.read(path)!.lost, null, 'a seal takes the counted records along');
  j.close();
});

test('a torn last line and a damaged line in the middle are skipped; the lines after them still count', () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: null });
  j.write(T0 + 1, [exit(T0 + 1, 1)]);
  j.write(T0 + 2, [exit(T0 + 2, 2)]);
  j.write(T0 + 3, [exit(T0 + 3, 3)]);
  j.close();
  const lines = readFileSync(path, 'utf8').split('\n');
  lines[2] = lines[2].replace('"pid":2', '"pid":9'); // the checksum no longer matches
  writeFileSync(path, lines.join('\n'));
  appendFileSync(path, 'deadbeefdeadbeef {"t":1'); // a write cut short by a power loss
  const c = CrashJournal.read(path)!;
  assert.deepEqual(
    c.records.map((r) => (r.type === 'process_exit' ? r.pid : -1)),
    [1, 3],
  );
  assert.ok(c.tornBytes > 30, `torn ${c.tornBytes}`);
  assert.equal(c.lastWrite, T0 + 3);
});

test('records that do not match the protocol are counted, and a lost header keeps every record out', () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: null });
  j.write(T0 + 1, [exit(T0 + 1, 1), { type: 'nonsense', t: T0 } as unknown as PofrRecord]);
  j.close();
  const c = CrashJournal.read(path)!;
  assert.equal(c.records.length, 1);
  assert.equal(c.invalid, 1);
  const text = readFileSync(path, 'utf8');
  writeFileSync(path, `${text[0] === '0' ? '1' : '0'}${text.slice(1)}`);
  const headless = CrashJournal.read(path)!;
  assert.equal(headless.header, null);
  assert.deepEqual(headless.records, [], 'without the header nothing says which chain they belong to');
  assert.equal(headless.invalid, 2);
});

test('an idle recorder does not grow its journal: ticks are dropped when nothing is unsealed', () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: null });
  for (let i = 0; i < 5000; i++) j.write(T0 + i * SEC, []);
  assert.ok(statSync(path).size < 80 * 1024, `${statSync(path).size} bytes`);
  assert.equal(CrashJournal.read(path)!.lastWrite, T0 + 4999 * SEC);
  j.write(T0 + 5000 * SEC, [exit(T0 + 5000 * SEC)]);
  for (let i = 5001; i < 7000; i++) j.write(T0 + i * SEC, []);
  assert.equal(CrashJournal.read(path)!.records.length, 1, 'never dropped while records are unsealed');
  j.close();
});

test('fdatasync runs off the event loop at most once per syncMs, and close waits for it', async () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: 0 });
  for (let i = 0; i < 20; i++) {
    j.write(T0 + i, [exit(T0 + i)]);
    await new Promise((r) => setTimeout(r, 2));
  }
  const deadline = Date.now() + 10_000;
  while (j.status().syncs === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(j.status().syncs >= 1);
  j.close();
  const rare = CrashJournal.open(fresh(), HEADER, { syncMs: 60_000 });
  for (let i = 0; i < 20; i++) rare.write(T0 + i, [exit(T0 + i)]);
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(rare.status().syncs <= 1, 'at most one sync within the period');
  rare.close();
});

test(
  'a full disk never reaches the recorder: the journal counts the records and reports once',
  {
    skip: TINY_DISK_SKIP,
  },
  () =>
    withTinyDisk('64k', (dir) => {
      const path = join(dir, 'journal');
      const errors: string[] = [];
      const j = CrashJournal.open(path, HEADER, { syncMs: null, onError: (m) => errors.push(m) });
      writeFileSync(join(dir, 'filler'), Buffer.alloc(60 * 1024));
      for (let i = 1; i <= 30; i++) j.write(T0 + i, [bigArgv(T0 + i, 2000)]);
      const st = j.status();
      assert.ok((st.lost?.dropped ?? 0) > 0, 'records that did not fit are counted');
      assert.match(st.lastError ?? '', /ENOSPC/);
      assert.equal(errors.length, 1, `reported once: ${errors.join(' | ')}`);
      const c = CrashJournal.read(path)!;
      assert.equal(c.records.length + (st.lost?.dropped ?? 0), 30, 'each record is kept or counted');
      j.close();
    }),
);

test('a cycle frame is the checksummed JSON of {t, r}, byte for byte, with hostile record text', () => {
  const path = fresh();
  const j = CrashJournal.open(path, HEADER, { syncMs: null });
  const hostile: PofrRecord = {
    type: 'process_start',
    t: T0 + 5,
    proc: proc(9, 9, {
      argv: ['it\'s "quoted"\n%s', { b64: Buffer.from([0xff, 0xfe, 0x0a]).toString('base64') }],
    }),
  };
  const records = [exit(T0 + 5, 1), hostile];
  j.write(T0 + 5, records);
  j.close();
  const lines = readFileSync(path, 'utf8').split('\n');
  const json = JSON.stringify({ t: T0 + 5, r: records });
  const expected = `${createHash('sha256').update(json).digest('hex').slice(0, 16)} ${json}`;
  assert.ok(lines.includes(expected), 'the frame is what JSON.stringify({ t, r }) gives, checksummed');
  assert.deepEqual(CrashJournal.read(path)!.records, records);
});
