import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { OPENSSH_SKIP, type OpensshServer, startOpensshServer } from '../helpers/openssh-server.js';
import { type Daemon, jsonLines, pofr, startPofr, storedBatchHash } from '../helpers/pofr-cli.js';
import { until } from '../helpers/wait.js';

/** What an exec or shell request on a session yields: its exit status, stdout and stderr. */
function run(
  open: (cb: (err: Error | undefined, ch: ssh2.ClientChannel) => void) => void,
): Promise<{ code: number | null; out: string; err: string; refused: Error | null }> {
  return new Promise((resolve) => {
    open((e, ch) => {
      if (e) return resolve({ code: null, out: '', err: '', refused: e });
      let out = '';
      let err = '';
      let code: number | null = null;
      ch.on('data', (d: Buffer) => {
        out += d.toString();
      });
      ch.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      ch.on('exit', (c: number | null) => {
        code = c;
      });
      ch.on('close', () => resolve({ code, out, err, refused: null }));
      ch.end();
    });
  });
}

/**
 * OpenSSH mode against a real Debian sshd: the client enrolls, pushes and gets its ACKs through
 * `AuthorizedKeysCommand pofr server authorized-keys` and its forced commands; the same key gets no
 * shell, no other command, no sftp and no forwarding, and each refusal pofr sees is an audit row.
 */
describe('OpenSSH mode: the site sshd as the server end', { skip: OPENSSH_SKIP }, () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-openssh-'));
  const data = join(base, 'server');
  const state = join(base, 'client');
  const daemons: Daemon[] = [];
  let sshd: OpensshServer;

  before(async () => {
    assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
    sshd = await startOpensshServer(data);
  });

  after(async () => {
    for (const d of daemons) await d.stop(5000);
    await sshd?.stop();
    rmSync(base, { recursive: true, force: true });
  });

  test('enroll, push, ACK and verify through sshd with --ssh-user', async () => {
    const token = (await pofr(['server', 'token', '--data', data, '--approve'])).stdout.trim();
    const enroll = await pofr([
      ...['client', 'enroll', '--state', state, '--server', `127.0.0.1:${sshd.port}`, '--ssh-user', 'root'],
      ...['--token', token, '--fingerprint', sshd.fingerprint, '--name', 'via-sshd'],
    ]);
    assert.equal(enroll.code, 0, `${enroll.stderr}\nsshd: ${sshd.log()}`);
    const saved = JSON.parse(readFileSync(join(state, 'client.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(saved.ssh_user, 'root', 'remembered for run');
    assert.equal(saved.server_fingerprint, sshd.fingerprint, "sshd's own host key is the one pinned");

    const client = startPofr(['client', 'run', '--state', state, '--interval', '300', '--batch', '500']);
    daemons.push(client);
    await until('batches stored through sshd', async () => {
      const [c] = jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout);
      return Number(c?.last_seq ?? 0) >= 2 ? true : undefined;
    });
    assert.equal(await client.stop(), 0, client.stderr());
    const status = jsonLines((await pofr(['client', 'status', '--state', state, '--json'])).stdout)[0];
    assert.equal(status.spool_depth, 0, 'every batch was acknowledged');
    const verify = await pofr(['verify', '--data', data, '--json']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    const [report] = jsonLines(verify.stdout);
    assert.equal(report.sealed, true);
    assert.ok(Number(report.batches) >= 2);
  });

  test('the rules `server init --rules` records are evaluated live by the forced command, in OpenSSH mode', async () => {
    const marker = `pofr-openssh-rule-${randomBytes(4).toString('hex')}`;
    const rules = join(base, 'rules');
    mkdirSync(rules);
    writeFileSync(
      join(rules, 'marker.yml'),
      [
        'title: OpenSSH mode marker',
        'id: 5d1c0b1e-0000-4000-8000-0000000000aa',
        'author: OpenSSH Mode Test',
        'level: high',
        'logsource: { product: linux, category: process_creation }',
        'detection:',
        '  sel:',
        `    CommandLine|contains: '${marker.toUpperCase()}'`,
        '  condition: sel',
        '',
      ].join('\n'),
    );
    const init = await pofr(['server', 'init', '--data', data, '--rules', rules]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stderr, /1 rules evaluated on every batch/);
    // A process the recorder sees at its first keyframe: `sh -c 'sleep 30' MARKER` (MARKER is $0).
    const holder = spawn('/bin/sh', ['-c', 'sleep 30', marker], { stdio: 'ignore' });
    const client = startPofr(['client', 'run', '--state', state, '--interval', '300', '--batch', '500']);
    daemons.push(client);
    try {
      const alert = await until('the live alert of the marker process', async () => {
        const rows = jsonLines((await pofr(['alerts', '--data', data, '--json'])).stdout);
        return rows.find((r) => String(r.cmdline ?? '').includes(marker));
      });
      assert.equal(alert.title, 'OpenSSH mode marker');
      assert.equal(alert.author, 'OpenSSH Mode Test');
      assert.equal(
        await storedBatchHash(data, Number(alert.batch_seq)),
        alert.batch_hash,
        'the alert names the stored batch that recorded it',
      );
    } finally {
      holder.kill();
      assert.equal(await client.stop(), 0, client.stderr());
      // The later tests ingest without rules, as before.
      assert.equal((await pofr(['server', 'init', '--data', data, '--no-rules'])).code, 0);
    }
  });

  test('the pofr key gets no shell, no other command, no sftp and no port forward from that sshd', async () => {
    const key = readFileSync(join(state, 'ssh_ed25519_key'), 'utf8');
    const client = new ssh2.Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve()).once('error', reject);
      client.connect({
        host: '127.0.0.1',
        port: sshd.port,
        username: 'root',
        privateKey: key,
        hostVerifier: () => true,
      });
    });
    try {
      const shell = await run((cb) => client.shell(false, cb));
      assert.equal(shell.code, 1, 'the forced command refuses the shell');
      assert.match(shell.err, /a shell refused/);
      const id = await run((cb) => client.exec('id; cat /etc/shadow', cb));
      assert.equal(id.code, 1);
      assert.doesNotMatch(id.out, /uid=|root:/, 'nothing ran');
      assert.match(id.err, /exec "id; cat \/etc\/shadow" refused/);
      const pty = await run((cb) => client.exec('pofr-ingest', { pty: true }, cb));
      assert.match(String(pty.refused), /pseudo-terminal|pty/i, 'restrict: no pty');
      const sftpErr = await new Promise<Error | null>((resolve) =>
        client.sftp((err) => resolve(err ?? null)),
      );
      assert.ok(sftpErr, 'sftp does not start');
      const fwdErr = await new Promise<Error | null>((resolve) =>
        client.forwardOut('127.0.0.1', 1, '127.0.0.1', sshd.port, (err) => resolve(err ?? null)),
      );
      assert.ok(fwdErr, 'no local forwarding');
      await until('sshd to say why (restrict)', async () =>
        /refused local port forward: originator 127\.0\.0\.1 port 1/.test(sshd.log()) ? true : undefined,
      );
      const listenErr = await new Promise<Error | null>((resolve) =>
        client.forwardIn('127.0.0.1', 0, (err) => resolve(err ?? null)),
      );
      assert.ok(listenErr, 'no remote forwarding either');
    } finally {
      client.end();
    }
    // The real OpenSSH client, too: its key gets the forced command, never a shell.
    const viaSsh = (() => {
      try {
        return execFileSync(
          'ssh',
          [
            ...['-i', join(state, 'ssh_ed25519_key'), '-p', String(sshd.port), '-o', 'BatchMode=yes'],
            ...[
              '-o',
              'StrictHostKeyChecking=no',
              '-o',
              'UserKnownHostsFile=/dev/null',
              '-o',
              'IdentitiesOnly=yes',
            ],
            'root@127.0.0.1',
            'echo pwned',
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        ).toString();
      } catch (e) {
        return `exit ${(e as { status: number }).status}: ${(e as { stdout: Buffer }).stdout}`;
      }
    })();
    assert.match(viaSsh, /^exit 1: $/, 'ssh root@… echo pwned prints nothing and fails');

    const audit = await until('the audit rows of the refusals', async () => {
      const rows = jsonLines((await pofr(['server', 'audit', '--data', data, '--json'])).stdout);
      return rows.filter((r) => r.kind === 'exec_refused').length >= 2 ? rows : undefined;
    });
    const kinds = audit.map((r) => r.kind);
    assert.ok(kinds.includes('channel_refused'), `shell and sftp: ${kinds}`);
    assert.ok(
      audit.some((r) => r.kind === 'channel_refused' && /sftp/.test(String(r.reason))),
      'sftp is named',
    );
    const shellRow = audit.find((r) => r.kind === 'channel_refused' && /a shell/.test(String(r.reason)));
    assert.ok(shellRow);
    assert.equal(shellRow.host, 'via-sshd');
    assert.match(
      String(shellRow.remote),
      /^127\.0\.0\.1:\d+$/,
      'the address comes from sshd ($SSH_CONNECTION)',
    );
    assert.match(String(shellRow.fingerprint), /^SHA256:/);
  });

  test('a host revoked while its channel through sshd is open is cut off mid-stream, on whichever node', async () => {
    const client = startPofr(['client', 'run', '--state', state, '--interval', '200', '--batch', '200']);
    daemons.push(client);
    const seqNow = async () =>
      Number(
        jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout)[0]?.last_seq ?? 0,
      );
    const before = await seqNow();
    await until('the stream through sshd', async () => ((await seqNow()) > before + 1 ? true : undefined));
    const host = jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout)[0];
    assert.equal((await pofr(['server', 'revoke', '--data', data, String(host.host_id)])).code, 0);
    const cut = await until('the channel cut', async () => {
      const rows = jsonLines(
        (await pofr(['server', 'audit', '--data', data, '--json', '--kind', 'revoked_cut'])).stdout,
      );
      return rows[0];
    });
    assert.equal(cut.host, 'via-sshd');
    assert.match(String(cut.reason), /was revoked: connection cut/);
    await client.waitFor(/was revoked: connection cut/);
    const atCut = await seqNow();
    await until('its reconnect refused by authorized-keys', async () => {
      const rows = jsonLines(
        (await pofr(['server', 'audit', '--data', data, '--json', '--kind', 'revoked_key'])).stdout,
      );
      return rows.length > 0 ? true : undefined;
    });
    assert.ok((await seqNow()) <= atCut + 1, 'nothing more is stored');
    assert.equal(await client.stop(), 0, client.stderr());
  });

  test("a stranger's ed25519 key only reaches enrollment, which needs a token; the revoked key gets nothing", async () => {
    const stranger = join(base, 'stranger');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    const pub = readFileSync(`${stranger}.pub`, 'utf8').trim().split(' ');
    const line = await pofr(['server', 'authorized-keys', '--data', data, pub[0], pub[1]]);
    assert.equal(line.code, 0);
    assert.match(
      line.stdout,
      /^restrict,command=".* server enroll-stdio --data .* --key 'ssh-ed25519 [^']+'" ssh-ed25519 /,
    );
    const authentic = await pofr(['verify', '--data', data, '--allow-gaps']);
    assert.equal(authentic.code, 0, `still authentic: ${authentic.stderr}`);
    const clientPub = readFileSync(join(state, 'ssh_ed25519_key.pub'), 'utf8').trim().split(' ');
    const revoked = await pofr([
      'server',
      'authorized-keys',
      '--data',
      data,
      '--connection',
      '192.0.2.9 4444 127.0.0.1 22',
      clientPub[0],
      clientPub[1],
    ]);
    assert.equal(revoked.code, 0);
    assert.equal(revoked.stdout, '', 'a revoked key gets no line at all');
    const rows = jsonLines(
      (await pofr(['server', 'audit', '--data', data, '--json', '--kind', 'revoked_key'])).stdout,
    );
    assert.equal(rows.at(-1)?.remote, '192.0.2.9:4444');
  });
});
