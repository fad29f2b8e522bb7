import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type ExportManifest, exportWindow, verifyStore } from '../../src/ingest/index.js';
import { openStore } from '../../src/store/index.js';
import { jsonLines, pofr } from '../helpers/pofr-cli.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';
import { T0 } from './host-fixture.js';
import { DAY, history } from './window-history.js';

const manifestOf = (out: string) =>
  JSON.parse(readFileSync(`${out}.manifest.json`, 'utf8')) as ExportManifest;

for (const dialect of DIALECTS) {
  test(`[${dialect}] a SQLite export of a window re-verifies on its own, with pofr verify --data EXPORT`, (t) =>
    withStore(t, dialect, async (store) => {
      const dir = mkdtempSync(join(tmpdir(), 'pofr-export-'));
      try {
        const host = await history(store);
        const out = join(dir, 'web1 "day 10".sqlite');
        const m = await exportWindow(store, {
          hostId: host.hostId,
          from: T0 + 5 * DAY,
          format: 'sqlite',
          out,
        });
        assert.equal(m.batches, 2);
        assert.deepEqual(
          m.chain.map((c) => c.seq),
          [3, 4],
        );
        const source = await store.db.selectFrom('batches').select(['seq', 'hash']).orderBy('seq').execute();
        assert.equal(m.chain[0]?.hash, source[2]?.hash, 'the manifest names the signed chain hashes');
        assert.equal(m.prev_hash, source[1]?.hash);
        const onDisk = manifestOf(out);
        assert.equal(onDisk.file.sha256, createHash('sha256').update(readFileSync(out)).digest('hex'));

        // Another machine: only the file.
        const exported = await openStore({ kind: 'sqlite', path: out });
        try {
          const [v] = await verifyStore(exported);
          assert.equal(v?.ok, true, JSON.stringify(v?.failures));
          assert.equal(v?.complete, true, JSON.stringify(v?.known_gaps));
          assert.equal(v?.batches, 2);
          assert.equal(
            v?.pruned?.before_seq,
            3,
            'the window before is reported as not exported, not missing',
          );
          // bash started before the window and ran through it: it comes along as the state at the start.
          const pids = await exported.db.selectFrom('processes').select('pid').orderBy('pid').execute();
          assert.deepEqual(
            pids.map((r) => Number(r.pid)),
            [100, 300],
          );
        } finally {
          await exported.close();
        }
        const cli = await pofr(['verify', '--data', out, '--json']);
        assert.equal(cli.code, 0, cli.stderr);
        const [row] = jsonLines(cli.stdout);
        assert.deepEqual([row?.ok, row?.complete, row?.batches], [true, true, 2]);
        assert.equal(
          (row?.pruned as { before_seq?: number } | null)?.before_seq,
          3,
          'verify --json says pruned',
        );

        // An edited row of the export fails its verify.
        const edited = await openStore({ kind: 'sqlite', path: out });
        try {
          await edited.db.updateTable('processes').set({ comm: 'evil' }).where('pid', '=', 300).execute();
          const [bad] = await verifyStore(edited);
          assert.equal(bad?.ok, false);
          // bash came along as the state at the window's start: the export's digest of it stands for its evidence.
          await edited.db.updateTable('processes').set({ comm: 'true' }).where('pid', '=', 300).execute();
          await edited.db.updateTable('processes').set({ exe: '/tmp/evil' }).where('pid', '=', 100).execute();
          const [worse] = await verifyStore(edited);
          assert.equal(worse?.ok, false);
          assert.match(worse?.failures.map((f) => f.reason).join('\n') ?? '', /rows open at the prune's cut/);
        } finally {
          await edited.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }));

  test(`[${dialect}] JSON Lines and CSV exports hold every record of the window's batches`, (t) =>
    withStore(t, dialect, async (store) => {
      const dir = mkdtempSync(join(tmpdir(), 'pofr-export-'));
      try {
        const host = await history(store);
        const jsonl = join(dir, 'all.jsonl');
        const m = await exportWindow(store, { hostId: host.hostId, format: 'jsonl', out: jsonl });
        assert.equal(m.batches, 4);
        const lines = jsonLines(readFileSync(jsonl, 'utf8'));
        assert.equal(lines.length, m.records);
        assert.deepEqual(lines[1], {
          seq: 1,
          batch_hash: m.chain[0]?.hash,
          index: 1,
          record: lines[1]?.record,
        });
        assert.equal((lines[1]?.record as { type?: string } | undefined)?.type, 'process_start');

        const csv = join(dir, 'old.csv');
        const c = await exportWindow(store, { hostId: host.hostId, to: T0 + DAY, format: 'csv', out: csv });
        assert.equal(c.batches, 2);
        const rows = readFileSync(csv, 'utf8').trimEnd().split('\n');
        assert.equal(rows[0], 'seq,batch_hash,index,t,type,record');
        assert.equal(rows.length, c.records + 1);
        // The record column is JSON, quoted with its quotes doubled.
        assert.match(rows[1] ?? '', /^1,[0-9a-f]{64},0,\d+,inventory,"\{""type"":""inventory""/);
        assert.equal(manifestOf(csv).file.bytes, readFileSync(csv).length);

        await assert.rejects(
          exportWindow(store, { hostId: host.hostId, format: 'csv', out: csv }),
          /exists; export writes new files only/,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }));
}
