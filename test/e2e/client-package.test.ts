import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cannotInstall, isAlive, PACKAGE_VERSION, runCommand } from '../helpers/package-install.js';
import { type Daemon, jsonLines, pofr, startPofr } from '../helpers/pofr-cli.js';

/**
 * `pofr server package-client` end to end: the files are built once by the real command against a
 * real server, then the single executable runs from an empty folder with no `node` anywhere on its
 * PATH, and the .deb and the tarball are inspected and installed on this machine for real, their
 * recorder checked to deliver verified batches, then removed and purged to nothing.
 */

const STATE = '/var/lib/pofr';
const CONFIG = '/etc/pofr/client.json';
const run = runCommand;

/** Why the packages cannot be installed on this machine for real, or false. */
function cannotInstallHere(): string | false {
  return cannotInstall('pofr-client', [join(STATE, 'client.json'), CONFIG, '/usr/local/bin/pofr-client']);
}

function readPid(): number | null {
  try {
    const pid = Number(readFileSync(join(STATE, 'client.pid'), 'utf8').trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null> | T | null,
  timeoutMs = 90_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('package-client: one executable, a .deb and a tarball, enrolled and recording', () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-pkg-'));
  const data = join(base, 'server');
  const out = join(base, 'out');
  let server: Daemon;
  let fingerprint = '';
  let built = '';
  const started: ChildProcess[] = [];

  const clients = async () => jsonLines((await pofr(['server', 'clients', '--data', data, '--json'])).stdout);
  /** The host enrolled with this state directory's client.json, once the server holds a batch of it. */
  const ackedBatchOf = async (state: string, after = 0) => {
    const hostId = (JSON.parse(readFileSync(join(state, 'client.json'), 'utf8')) as { host_id: string })
      .host_id;
    const row = (await clients()).find((c) => c.host_id === hostId);
    return row && typeof row.last_seq === 'number' && row.last_seq > after
      ? { hostId, seq: row.last_seq }
      : null;
  };

  before(async () => {
    assert.equal((await pofr(['server', 'init', '--data', data])).code, 0);
    fingerprint = (await pofr(['server', 'fingerprint', '--data', data])).stdout.trim();
    server = startPofr(['server', 'run', '--data', data, '--listen', '127.0.0.1:0']);
    const port = Number((await server.waitFor(/"port":(\d+)/))[1]);
    // Three hosts may enroll with the packaged token (the executable, the .deb, the tarball), each
    // pending until approved, as with any token made without --approve.
    const r = await pofr([
      'server',
      'package-client',
      '--data',
      data,
      '--server',
      `127.0.0.1:${port}`,
      '--uses',
      '3',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    built = r.stdout;
  });

  after(async () => {
    for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
    await server?.stop(5000);
    rmSync(base, { recursive: true, force: true });
  });

  test('writes the three files CLI.md names, with their sizes on stdout', () => {
    const names = [
      'pofr-client',
      `pofr-client_${PACKAGE_VERSION}_amd64.deb`,
      `pofr-client-${PACKAGE_VERSION}-linux-x64.tar.gz`,
    ];
    for (const name of names) {
      const st = statSync(join(out, name));
      assert.match(built, new RegExp(`${name.replace(/\./g, '\\.')}\\t${st.size}\\n`));
      // They carry the enrollment token: the server's operator only.
      assert.equal(st.mode & 0o077, 0, `${name} is readable by others`);
    }
    const exe = join(out, 'pofr-client');
    assert.ok(statSync(exe).size > 40 * 1024 * 1024, 'Node itself is inside');
    assert.match(readFileSync(exe).subarray(0, 4).toString('latin1'), /^\x7fELF/);
  });

  test('the executable enrolls, records and delivers verified batches from an empty folder without node', async () => {
    const empty = join(base, 'empty');
    const state = join(base, 'sea-state');
    mkdirSync(empty);
    copyFileSync(join(out, 'pofr-client'), join(empty, 'pofr-client'));
    // No node, npm or compiler on PATH: only what the executable brings.
    const env = { PATH: '/nonexistent', HOME: empty, POFR_CLIENT_CONFIG: join(empty, 'no-such-file.json') };
    const version = run(join(empty, 'pofr-client'), ['--version'], env, empty);
    assert.equal(version.stdout.trim(), PACKAGE_VERSION, version.stderr);

    const enroll = run(
      join(empty, 'pofr-client'),
      ['enroll', '--state', state, '--name', 'sea-host'],
      env,
      empty,
    );
    assert.equal(enroll.code, 0, enroll.stderr);
    assert.match(enroll.stderr, /enrolled as sea-host .* status pending, server key (\S+)/);
    assert.ok(enroll.stderr.includes(fingerprint), 'the packaged fingerprint was pinned');
    assert.equal((await pofr(['server', 'approve', '--data', data, 'sea-host'])).code, 0);

    const child = spawn(join(empty, 'pofr-client'), ['run', '--state', state, '--batch', '1000'], {
      cwd: empty,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    started.push(child);
    let log = '';
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    await waitFor('a batch of the single-file client', () => ackedBatchOf(state));
    const listed = (await clients()).find((c) => c.name === 'sea-host');
    assert.equal(
      listed?.client_version,
      PACKAGE_VERSION,
      'server clients shows the version the client announced',
    );
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, log);
    assert.doesNotMatch(log, /Warning|single-executable/, 'no Node warning about require in a SEA');

    const verify = await pofr(['verify', '--data', data, '--host', 'sea-host', '--json']);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    const [row] = jsonLines(verify.stdout);
    assert.ok((row.batches as number) >= 1 && row.ok === true, verify.stdout);
    const procs = jsonLines(
      (await pofr(['procs', '--data', data, '--host', 'sea-host', '--command', 'pofr-client run', '--json']))
        .stdout,
    );
    assert.ok(
      procs.some((p) => p.observer === true && String(p.exe).endsWith('/empty/pofr-client')),
      'the recorder saw itself, the executable, as the observer',
    );
  });

  test('the .deb: its control data, contents, unit and maintainer scripts', () => {
    const deb = join(out, `pofr-client_${PACKAGE_VERSION}_amd64.deb`);
    const info = run('dpkg-deb', ['--info', deb]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /^ Package: pofr-client$/m);
    assert.match(info.stdout, new RegExp(`^ Version: ${PACKAGE_VERSION}$`, 'm'));
    assert.match(info.stdout, /^ Architecture: amd64$/m);
    assert.match(info.stdout, /^ Depends: libc6 \(>= 2\.28\), libstdc\+\+6/m);
    // The Depends line only: the description holds the server's random host key fingerprint,
    // which once spelled "npm" (CI, 2026-12-03).
    const depends = /^ Depends: (.*)$/m.exec(info.stdout)?.[1] ?? '';
    assert.doesNotMatch(depends, /nodejs|npm/, 'nothing of Node is a dependency');
    for (const script of ['postinst', 'prerm', 'postrm', 'conffiles'])
      assert.match(info.stdout, new RegExp(` ${script}\\b`));

    const contents = run('dpkg-deb', ['--contents', deb]).stdout;
    assert.match(contents, /^-rwx------ root\/root .* \.\/usr\/bin\/pofr-client$/m);
    assert.match(contents, /^-rw-r--r-- root\/root .* \.\/lib\/systemd\/system\/pofr-client\.service$/m);
    assert.match(contents, /^-rw------- root\/root .* \.\/etc\/pofr\/client\.json$/m);

    const ctl = join(base, 'control');
    assert.equal(run('dpkg-deb', ['--control', deb, ctl]).code, 0);
    assert.equal(readFileSync(join(ctl, 'conffiles'), 'utf8'), `${CONFIG}\n`);
    for (const script of ['postinst', 'prerm', 'postrm']) {
      const check = run('sh', ['-n', join(ctl, script)]);
      assert.equal(check.code, 0, `${script}: ${check.stderr}`);
      assert.ok((statSync(join(ctl, script)).mode & 0o111) !== 0, `${script} is executable`);
    }
    const tree = join(base, 'tree');
    assert.equal(run('dpkg-deb', ['--extract', deb, tree]).code, 0);
    const unit = readFileSync(join(tree, 'lib/systemd/system/pofr-client.service'), 'utf8');
    for (const line of [
      'ExecStart=/usr/bin/pofr-client run --state /var/lib/pofr',
      'Restart=on-failure',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/pofr',
      'ProtectHome=read-only',
      'PrivateTmp=yes',
      'WantedBy=multi-user.target',
    ]) {
      assert.ok(unit.split('\n').includes(line), `unit lacks ${line}`);
    }
    const config = JSON.parse(readFileSync(join(tree, 'etc/pofr/client.json'), 'utf8')) as Record<
      string,
      string
    >;
    assert.equal(config.fingerprint, fingerprint);
    assert.match(config.token, /^pofr_/);
  });

  test('dpkg -i enrolls and starts it, the unit’s command records by hand, dpkg -r stops it, dpkg -P leaves nothing', {
    skip: cannotInstallHere(),
  }, async () => {
    const deb = join(out, `pofr-client_${PACKAGE_VERSION}_amd64.deb`);
    const unit = readFileSync(join(base, 'tree/lib/systemd/system/pofr-client.service'), 'utf8');
    const command = (key: string) => {
      const line = unit.split('\n').find((l) => l.startsWith(`${key}=`))!;
      return line.slice(key.length + 1).split(' ');
    };
    try {
      const install = run('dpkg', ['-i', deb]);
      assert.equal(install.code, 0, install.stderr);
      assert.match(
        install.stderr,
        /pending until: pofr server approve/,
        'postinst says the host waits for approval',
      );
      const pid = readPid();
      assert.ok(pid !== null, `postinst started the recorder without systemd:\n${install.stderr}`);
      assert.equal((statSync(STATE).mode & 0o777).toString(8), '700');
      const host = (JSON.parse(readFileSync(join(STATE, 'client.json'), 'utf8')) as { host_id: string })
        .host_id;
      assert.equal((await pofr(['server', 'approve', '--data', data, host])).code, 0);
      const first = await waitFor('a batch of the installed client', () => ackedBatchOf(STATE));

      // As systemd would: ExecStartPre (enrolled already: nothing to do), ExecStart, SIGTERM.
      assert.equal(run('/usr/bin/pofr-client', ['stop', '--wait', '--state', STATE]).code, 0);
      const [pre, ...preArgs] = command('ExecStartPre');
      const again = run(pre, preArgs);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /already enrolled/);
      const [exe, ...args] = command('ExecStart');
      const child = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      started.push(child);
      await waitFor('a batch from the unit’s command', () => ackedBatchOf(STATE, first.seq));
      child.kill('SIGTERM');
      assert.equal((await once(child, 'exit'))[0], 0);

      assert.equal(run('/usr/bin/pofr-client', ['start', '--state', STATE]).code, 0);
      const daemon = await waitFor('the restarted daemon', () => readPid());
      const remove = run('dpkg', ['-r', 'pofr-client']);
      assert.equal(remove.code, 0, remove.stderr);
      assert.ok(!isAlive(daemon), 'removing the package stopped the recorder');
      assert.ok(!existsSync('/usr/bin/pofr-client'));
      assert.ok(
        existsSync(CONFIG) && existsSync(join(STATE, 'client.json')),
        'remove keeps configuration and state',
      );

      const purge = run('dpkg', ['-P', 'pofr-client']);
      assert.equal(purge.code, 0, purge.stderr);
      assert.ok(!existsSync(STATE), `${STATE} is gone`);
      assert.ok(!existsSync('/etc/pofr'), '/etc/pofr is gone');
      assert.notEqual(run('dpkg-query', ['-W', 'pofr-client']).code, 0, 'not installed any more');

      const verify = await pofr(['verify', '--data', data, '--host', host]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    } finally {
      const pid = readPid();
      if (pid !== null) process.kill(pid, 'SIGKILL');
      if (run('dpkg-query', ['-W', 'pofr-client']).code === 0) run('dpkg', ['-P', 'pofr-client']);
    }
  });

  test('the tarball installs with install.sh and uninstall.sh --purge leaves nothing', {
    skip: cannotInstallHere(),
  }, async () => {
    const unpacked = join(base, 'tarball');
    mkdirSync(unpacked);
    const tgz = join(out, `pofr-client-${PACKAGE_VERSION}-linux-x64.tar.gz`);
    const list = run('tar', ['-tvzf', tgz]).stdout;
    for (const f of ['install.sh', 'uninstall.sh', 'pofr-client', 'pofr-client.service', 'client.json']) {
      assert.match(
        list,
        new RegExp(` pofr-client-${PACKAGE_VERSION}-linux-x64/${f.replace(/\./g, '\\.')}$`, 'm'),
      );
    }
    assert.equal(run('tar', ['-xzf', tgz, '-C', unpacked]).code, 0);
    const dir = join(unpacked, `pofr-client-${PACKAGE_VERSION}-linux-x64`);
    try {
      const install = run('sh', [join(dir, 'install.sh')]);
      assert.equal(install.code, 0, install.stderr);
      assert.ok(readPid() !== null, `install.sh started the recorder:\n${install.stderr}`);
      const host = (JSON.parse(readFileSync(join(STATE, 'client.json'), 'utf8')) as { host_id: string })
        .host_id;
      assert.equal((await pofr(['server', 'approve', '--data', data, host])).code, 0);
      await waitFor('a batch of the tarball’s client', () => ackedBatchOf(STATE));
      const uninstall = run('sh', [join(dir, 'uninstall.sh'), '--purge']);
      assert.equal(uninstall.code, 0, uninstall.stderr);
      for (const p of ['/usr/local/bin/pofr-client', STATE, '/etc/pofr'])
        assert.ok(!existsSync(p), `${p} is gone`);
    } finally {
      const pid = readPid();
      if (pid !== null) process.kill(pid, 'SIGKILL');
      run('sh', [join(dir, 'uninstall.sh'), '--purge']);
    }
  });
});
