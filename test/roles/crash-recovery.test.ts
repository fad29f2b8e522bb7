import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  decodeRecords,
  generateSigningKeyPair,
  loadPrivateKey,
  loadPublicKey,
  type PofrRecord,
  readBatchFrame,
  verifyBatchFrame,
} from '../../src/protocol/index.js';
import { BatchAssembler } from '../../src/roles/client/batch-assembler.js';
import { recoverJournal, startJournal } from '../../src/roles/client/crash-recovery.js';
import { CrashJournal, Spool } from '../../src/spool/index.js';

const pair = generateSigningKeyPair();
const key = loadPrivateKey(pair.privatePem);
const pub = loadPublicKey(pair.publicPem);
const base = mkdtempSync(join(tmpdir(), 'pofr-recovery-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const logs: { msg: string; fields?: object }[] = [];
const log = (msg: string, fields?: object) => logs.push({ msg, fields });

const exit = (t: number, pid: number): PofrRecord => ({ type: 'process_exit', t, pid, start_ticks: 7 });

/** A recorder run up to the moment it is killed: a real spool, a real journal, records never sealed. */
function crashedRun(bootId: string, opts: { sealedFirst?: number; unsealed: number; stop?: boolean }) {
  const dir = join(base, `run-${++n}`);
  const spool = Spool.open(join(dir, 'spool'));
  const path = join(dir, 'journal');
  const journal = startJournal({ log }, path, { host_id: 'h1', boot_id: bootId, sink: spool })!;
  const a = new BatchAssembler({
    hostId: 'h1',
    bootId,
    signingKey: key,
    sink: spool,
    journal,
    maxAgeMs: 60_000,
  });
  let t = 1_800_000_000_000_000;
  for (let i = 0; i < (opts.sealedFirst ?? 0); i++) a.add([exit(++t, 10 + i)], 0);
  if (opts.sealedFirst) a.seal();
  for (let i = 0; i < opts.unsealed; i++) a.add([exit(++t, 100 + i)], 0);
  a.add([], 0);
  if (opts.stop) {
    a.seal();
    journal.stop(t + 5, 'SIGTERM');
  } else {
    journal.close(); // the process dies here: nothing more is written
  }
  return { dir, path, spool: Spool.open(join(dir, 'spool')), lastT: t };
}

/** recoverJournal as the next start runs it, for host h1 unless told otherwise. */
function recover(
  path: string,
  sink: Spool,
  over: { bootId: string; hostId?: string; pid?: number },
): ReturnType<typeof recoverJournal> {
  return recoverJournal({
    path,
    sink,
    hostId: over.hostId ?? 'h1',
    bootId: over.bootId,
    signingKey: key,
    log,
    pid: over.pid,
  });
}

function spooledBatches(spool: Spool) {
  return spool.pending().map((b) => {
    const frame = readBatchFrame(b.read());
    verifyBatchFrame(frame, pub);
    return { header: frame.header, hash: frame.hash, records: decodeRecords(frame) };
  });
}

test('a killed run: the next start seals what the journal held, in the same chain, and records the crash', () => {
  const run = crashedRun('boot-a', { sealedFirst: 2, unsealed: 5 });
  assert.equal(run.spool.depth(), 1, 'only the first batch was sealed before the kill');
  const r = recover(run.path, run.spool, { bootId: 'boot-a', pid: 5 });
  const batches = spooledBatches(run.spool);
  assert.equal(batches.length, 2);
  const [first, recovered] = batches;
  assert.equal(recovered.header.seq, 2);
  assert.equal(recovered.header.prev_hash, first.hash, 'the recovered batch extends the chain');
  assert.equal(recovered.header.boot_id, 'boot-a');
  assert.deepEqual(
    recovered.records.map((x) => (x.type === 'process_exit' ? x.pid : -1)),
    [100, 101, 102, 103, 104],
  );
  assert.equal(r.crashed, true);
  assert.equal(r.recovered, 5);
  const [crash] = r.records;
  assert.equal(crash.type, 'recorder_crash');
  assert.ok(crash.type === 'recorder_crash');
  assert.equal(crash.pid, 5);
  assert.equal(crash.crashed_pid, process.pid);
  assert.equal(crash.crashed_boot_id, 'boot-a');
  assert.equal(crash.rebooted, false);
  assert.equal(crash.recovered_records, 5);
  assert.deepEqual([crash.recovered_seq_from, crash.recovered_seq_to], [2, 2]);
  assert.equal(crash.journal_lost, 0);
  assert.ok(crash.last_write !== null && crash.last_write <= crash.t);

  // The next journal begins at the new head: a second start finds nothing more to seal.
  startJournal({ log }, run.path, { host_id: 'h1', boot_id: 'boot-a', sink: run.spool })!.close();
  const again = recover(run.path, run.spool, { bootId: 'boot-a' });
  assert.equal(again.recovered, 0);
  assert.equal(run.spool.depth(), 2);
});

test('a journal left by a run of another boot is sealed with the boot it was recorded in', () => {
  const run = crashedRun('boot-before-the-power-cut', { unsealed: 3 });
  const r = recover(run.path, run.spool, { bootId: 'boot-now' });
  const [recovered] = spooledBatches(run.spool);
  assert.equal(recovered.header.seq, 1);
  assert.equal(recovered.header.boot_id, 'boot-before-the-power-cut');
  assert.equal(recovered.records.length, 3);
  const crash = r.records[0];
  assert.ok(crash.type === 'recorder_crash');
  assert.equal(crash.rebooted, true);
  assert.equal(crash.crashed_boot_id, 'boot-before-the-power-cut');
});

test('after a clean stop nothing is a crash, but a gap record still owed is sealed', () => {
  const run = crashedRun('boot-a', { unsealed: 2, stop: true });
  assert.equal(run.spool.depth(), 1);
  const clean = recover(run.path, run.spool, { bootId: 'boot-a' });
  assert.deepEqual(clean, { records: [], recovered: 0, crashed: false });
  assert.equal(run.spool.depth(), 1, 'nothing sealed twice');

  // A stop with a gap still owed (the spool was full): the gap goes out at the next start.
  const dir = join(base, `owed-${++n}`);
  const spool = Spool.open(join(dir, 'spool'), { maxBytes: 10 });
  const path = join(dir, 'journal');
  const journal = startJournal({ log }, path, { host_id: 'h1', boot_id: 'boot-a', sink: spool })!;
  const a = new BatchAssembler({ hostId: 'h1', bootId: 'boot-a', signingKey: key, sink: spool, journal });
  a.add([exit(1_800_000_000_000_001, 1)], 0);
  a.seal(); // refused: full
  journal.stop(1_800_000_000_000_009, 'SIGTERM');
  const roomy = Spool.open(join(dir, 'spool'));
  const owed = recover(path, roomy, { bootId: 'boot-a' });
  assert.equal(owed.crashed, false);
  const [batch] = spooledBatches(roomy);
  assert.equal(batch.records[0].type, 'gap');
  assert.ok(batch.records[0].type === 'gap' && batch.records[0].dropped === 1);
});

test('records the dead run had already sealed are not sealed twice', () => {
  const run = crashedRun('boot-a', { unsealed: 2 });
  // The run died after its seal reached the spool but before the journal was emptied.
  const a = new BatchAssembler({ hostId: 'h1', bootId: 'boot-a', signingKey: key, sink: run.spool });
  a.add([exit(1, 1), exit(2, 2)], 0);
  a.seal();
  const r = recover(run.path, run.spool, { bootId: 'boot-a' });
  assert.equal(run.spool.depth(), 1);
  assert.equal(r.crashed, true, 'it still did not stop cleanly');
  assert.equal(r.recovered, 0);
  assert.ok(logs.some((l) => /already sealed/.test(l.msg)));
});

test('a journal of another enrollment is left alone, and --no-journal removes the file', () => {
  const run = crashedRun('boot-a', { unsealed: 2 });
  const r = recover(run.path, run.spool, { bootId: 'boot-a', hostId: 'h2' });
  assert.deepEqual(r, { records: [], recovered: 0, crashed: false });
  assert.equal(run.spool.depth(), 0);
  assert.equal(
    startJournal({ log, journal: false }, run.path, { host_id: 'h1', boot_id: 'b', sink: run.spool }),
    undefined,
  );
  assert.ok(!readdirSync(run.dir).includes('journal'));
  assert.equal(CrashJournal.read(run.path), null);
});

test('what the journal could not keep is sealed as a gap before the recovered records', () => {
  const dir = join(base, `bound-${++n}`);
  const spool = Spool.open(join(dir, 'spool'));
  const path = join(dir, 'journal');
  const journal = startJournal({ log, journalMaxBytes: 2048 }, path, {
    host_id: 'h1',
    boot_id: 'b',
    sink: spool,
  })!;
  const a = new BatchAssembler({
    hostId: 'h1',
    bootId: 'b',
    signingKey: key,
    sink: spool,
    journal,
    maxAgeMs: 60_000,
  });
  for (let i = 0; i < 60; i++) a.add([exit(1_800_000_000_000_000 + i, i)], 0);
  journal.close();
  const r = recover(path, spool, { bootId: 'b' });
  const [batch] = spooledBatches(spool);
  const gap = batch.records[0];
  assert.ok(gap.type === 'gap', JSON.stringify(gap));
  assert.match(gap.reason, /not in the crash journal .*2048-byte bound/);
  assert.equal(gap.dropped! + r.recovered, 60, 'kept or counted, every one');
  const crash = r.records[0];
  assert.ok(crash.type === 'recorder_crash');
  assert.equal(crash.journal_lost, gap.dropped);
  assert.ok(readFileSync(path).length <= 2048 + 300);
});
