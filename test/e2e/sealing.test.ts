import assert from 'node:assert/strict';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  decodeFrontier,
  loadPrivateKey,
  loadPublicKey,
  openBatch,
  readBatchFrame,
  sealBatch,
  sealKeyAt,
} from '../../src/protocol/index.js';
import { type Daemon, jsonLines, pofr, startPofr } from '../helpers/pofr-cli.js';
import { until } from '../helpers/wait.js';

const base = mkdtempSync(join(tmpdir(), 'pofr-seal-e2e-'));
const daemons: Daemon[] = [];
after(async () => {
  for (const d of daemons) await d.stop(5000);
  rmSync(base, { recursive: true, force: true });
});

const spooled = (spool: string) =>
  readdirSync(spool)
    .filter((f) => f.endsWith('.pofrb'))
    .sort();

/**
 * The threat forward-secure sealing answers, with real processes: batches wait in the spool while
 * the server is down; an intruder with root copies the client's whole state (signing key and seal
 * keys) and rewrites one of them, re-signed. The server refuses it for its seal, the audit trail
 * has the refusal, and `pofr verify` names it as the cause of the gap it leaves (exit status 3).
 */
test('a batch rewritten in the spool with a copy of the client state is refused for its seal, audited, and named by verify', async () => {
  const data = join(base, 'server');
  const state = join(base, 'client');
  const spool = join(state, 'spool');
  assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
  const fp = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
  const first = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
  daemons.push(first);
  const port = Number((await first.waitFor(/"port":(\d+)/))[1]);
  const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
  const enroll = await pofr([
    ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${port}`],
    ...['--token', token, '--fingerprint', fp, '--name', 'sealed-host'],
  ]);
  assert.equal(enroll.code, 0, enroll.stderr);
  assert.ok(!existsSync(join(state, 'seal_seed.pending')), 'the seed is gone once the server has it');
  const [host] = jsonLines(
    (
      await pofr([
        'sql',
        '--data',
        data,
        '--json',
        'SELECT host_id, seal_seed IS NOT NULL AS sealed, seal_from FROM hosts',
      ])
    ).stdout,
  );
  assert.equal(Number(host.sealed), 1, 'the server keeps the seal seed');
  assert.equal(Number(host.seal_from), 1);
  assert.equal(await first.stop(), 0, first.stderr());

  // The server is down: batches wait in the spool.
  const recording = startPofr(['client', 'run', '--state', state, '--interval', '200', '--batch', '300']);
  daemons.push(recording);
  await until('three batches in the spool', async () => (spooled(spool).length >= 3 ? true : undefined));
  assert.equal(await recording.stop(), 0, recording.stderr());

  // The intruder: the state as it is now, signing key and seal keys included.
  const signingKey = loadPrivateKey(readFileSync(join(state, 'signing_ed25519_key.pem'), 'utf8'));
  const publicKey = loadPublicKey(readFileSync(join(state, 'signing_ed25519_key.pub.pem'), 'utf8'));
  const head = JSON.parse(readFileSync(join(spool, 'chain-head.json'), 'utf8')) as {
    seq: number;
    seal: unknown;
  };
  const frontier = decodeFrontier(head.seal);
  const files = spooled(spool);
  const victimFile = files[1];
  const victim = openBatch(readFileSync(join(spool, victimFile)), publicKey);
  const victimSeq = victim.header.seq;
  assert.throws(() => sealKeyAt(frontier, victimSeq), { code: 'POFR_BATCH_SEAL' }, 'its seal key is gone');
  const rewritten = sealBatch(
    {
      host_id: victim.header.host_id,
      boot_id: victim.header.boot_id,
      seq: victimSeq,
      prev_hash: victim.header.prev_hash,
      records: victim.records.slice(0, 1),
    },
    signingKey,
    sealKeyAt(frontier, head.seq + 1).key,
  );
  writeFileSync(join(spool, `${victimFile}.new`), rewritten.bytes);
  renameSync(join(spool, `${victimFile}.new`), join(spool, victimFile));
  assert.equal(readBatchFrame(readFileSync(join(spool, victimFile))).header.record_count, 1);

  const second = startPofr(['server', 'run', '--data', data, '--listen', `127.0.0.1:${port}`]);
  daemons.push(second);
  await second.waitFor(/"port":(\d+)/);
  const delivering = startPofr(['client', 'run', '--state', state, '--interval', '500', '--batch', '500']);
  daemons.push(delivering);
  await until('the rewritten batch refused and moved aside', async () =>
    existsSync(join(spool, 'rejected', victimFile)) ? true : undefined,
  );
  assert.match(readFileSync(join(spool, 'rejected', `${victimFile}.reason.txt`), 'utf8'), /POFR_BATCH_SEAL/);
  await until('the batches after it delivered', async () => {
    const [c] = jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout);
    return Number(c?.last_seq ?? 0) > head.seq ? true : undefined;
  });
  assert.equal(await delivering.stop(), 0, delivering.stderr());
  assert.equal(await second.stop(), 0, second.stderr());

  const audit = jsonLines(
    (await pofr(['server', 'audit', '--data', data, '--json', '--kind', 'batch_seal'])).stdout,
  );
  assert.equal(audit.length, 1, JSON.stringify(audit));
  assert.equal(audit[0].host, 'sealed-host');
  assert.equal(audit[0].code, 'POFR_BATCH_SEAL');
  assert.match(String(audit[0].remote), /^127\.0\.0\.1:\d+$/);
  assert.match(String(audit[0].fingerprint), /^SHA256:/);
  assert.match(String(audit[0].reason), new RegExp(`^batch ${victimSeq}: .*the seal does not verify`));

  const verify = await pofr(['verify', '--data', data, '--json']);
  assert.equal(verify.code, 3, `authentic but incomplete: ${verify.stdout}${verify.stderr}`);
  const [report] = jsonLines(verify.stdout);
  assert.equal(report.ok, true);
  assert.equal(report.sealed, true);
  assert.equal(report.complete, false);
  const gaps = report.known_gaps as { kind: string; seq_from: number; detail: string }[];
  const cause = gaps.find((g) => g.seq_from === victimSeq);
  assert.ok(cause, JSON.stringify(gaps));
  assert.equal(cause.kind, 'refused_batch');
  assert.match(cause.detail, /POFR_BATCH_SEAL/);
  assert.match(verify.stderr, new RegExp(`known gap, refused_batch: batch ${victimSeq} was refused`));
  assert.equal((await pofr(['verify', '--data', data, '--allow-gaps'])).code, 0);
});
