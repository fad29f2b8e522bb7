import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cannotInstall, PACKAGE_VERSION, runCommand } from '../helpers/package-install.js';
import { type Daemon, jsonLines, pofr, startPofr } from '../helpers/pofr-cli.js';

/**
 * `pofr server package-server`: the server .deb is built by the real command, inspected, installed
 * on this machine for real (its `pofr` user, its data directory, its store), its unit's command run
 * by hand as the unit's user, a real client recorded into it, then removed and purged.
 */

const DATA = '/var/lib/pofr-server';
const VERSION = PACKAGE_VERSION;
const run = runCommand;

function cannotInstallHere(): string | false {
  if (runCommand('getent', ['passwd', 'pofr']).code === 0)
    return 'a pofr user exists here already (the test would delete it)';
  return cannotInstall('pofr-server', [DATA, '/usr/bin/pofr']);
}

describe('package-server: the server .deb', () => {
  const base = mkdtempSync(join(tmpdir(), 'pofr-srvpkg-'));
  const out = join(base, 'out');
  const deb = join(out, `pofr-server_${VERSION}_amd64.deb`);
  const tree = join(base, 'tree');
  const children: ChildProcess[] = [];
  const daemons: Daemon[] = [];

  before(async () => {
    const r = await pofr(['server', 'package-server', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${deb}\t${statSync(deb).size}\n`);
    assert.equal(run('dpkg-deb', ['--extract', deb, tree]).code, 0);
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const d of daemons) await d.stop(5000);
    rmSync(base, { recursive: true, force: true });
  });

  test('holds pofr, its production dependencies, a hardened unit and maintainer scripts', () => {
    const info = run('dpkg-deb', ['--info', deb]).stdout;
    assert.match(info, /^ Package: pofr-server$/m);
    assert.match(info, /^ Architecture: amd64$/m);
    const major = process.versions.node.split('.')[0];
    assert.match(
      info,
      new RegExp(`^ Depends: nodejs \\(>= ${major}\\), nodejs \\(<< ${Number(major) + 1}\\)`, 'm'),
    );
    const contents = run('dpkg-deb', ['--contents', deb]).stdout;
    for (const path of [
      './usr/lib/pofr/dist/src/cli/main.js',
      './usr/lib/pofr/dist/client/pofr-client.cjs',
      './usr/lib/pofr/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      './usr/lib/pofr/node_modules/postject/dist/api.js',
      './lib/systemd/system/pofr-server.service',
      './etc/default/pofr-server',
    ]) {
      assert.ok(contents.includes(` ${path}\n`), `${path} is in the package`);
    }
    assert.match(contents, / \.\/usr\/bin\/pofr -> \/usr\/lib\/pofr\/bin\/pofr$/m);
    for (const devOnly of ['typescript', '@biomejs', 'esbuild', '@types']) {
      assert.ok(!contents.includes(`/node_modules/${devOnly}/`), `${devOnly} (a dev dependency) stays out`);
    }
    const leftovers = contents
      .split('\n')
      .filter((l) => /\/dist\/(test|bench)\/|\.map$|\/obj(\.target)?\//.test(l));
    assert.deepEqual(leftovers, [], 'no tests, source maps or compiler output');
    const unit = readFileSync(join(tree, 'lib/systemd/system/pofr-server.service'), 'utf8').split('\n');
    for (const line of [
      'User=pofr',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      `ReadWritePaths=${DATA}`,
      'CapabilityBoundingSet=',
    ]) {
      assert.ok(unit.includes(line), `unit lacks ${line}`);
    }
    const ctl = join(base, 'control');
    assert.equal(run('dpkg-deb', ['--control', deb, ctl]).code, 0);
    for (const script of ['postinst', 'prerm', 'postrm'])
      assert.equal(run('sh', ['-n', join(ctl, script)]).code, 0);
  });

  test('installs with a pofr user and its store, serves a real client as that user, removes and purges', {
    skip: cannotInstallHere(),
  }, async () => {
    const unit = readFileSync(join(tree, 'lib/systemd/system/pofr-server.service'), 'utf8');
    const execStart = unit
      .split('\n')
      .find((l) => l.startsWith('ExecStart='))!
      .slice('ExecStart='.length);
    const state = join(base, 'client');
    try {
      const install = run('dpkg', ['-i', deb]);
      assert.equal(install.code, 0, install.stderr);
      const fp = /SSH host key (SHA256:\S+)/.exec(install.stderr)?.[1];
      assert.ok(fp, `postinst prints the fingerprint:\n${install.stderr}`);
      const st = statSync(DATA);
      const uid = Number(run('id', ['-u', 'pofr']).stdout.trim());
      assert.equal(st.uid, uid, `${DATA} belongs to pofr`);
      assert.equal((st.mode & 0o777).toString(8), '700');
      assert.ok(existsSync(join(DATA, 'pofr.db')) && existsSync(join(DATA, 'ssh_host_ed25519_key')));
      assert.match(run('getent', ['passwd', 'pofr']).stdout, /^pofr:x:\d+:\d+:.*:\/var\/lib\/pofr-server:/);

      // The unit's command, as its user, on a port of our own instead of $POFR_SERVER_ARGS.
      const [exe, ...args] = execStart.replace('$POFR_SERVER_ARGS', '--listen 127.0.0.1:0').split(' ');
      // setpriv execs (runuser would stay between us and the server, and end it as a session).
      const server = spawn('setpriv', ['--reuid=pofr', '--regid=pofr', '--init-groups', exe, ...args], {
        cwd: '/',
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(server);
      let log = '';
      server.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
      });
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no port in:\n${log}`)), 60_000);
        server.stderr!.on('data', () => {
          const m = /"port":(\d+)/.exec(log);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
      });
      const token = run('runuser', [
        '-u',
        'pofr',
        '--',
        '/usr/bin/pofr',
        'server',
        'token',
        '--data',
        DATA,
        '--approve',
      ]);
      assert.equal(token.code, 0, token.stderr);
      const enroll = await pofr([
        'client',
        'enroll',
        '--state',
        state,
        '--server',
        `127.0.0.1:${port}`,
        '--token',
        token.stdout.trim(),
        '--fingerprint',
        fp,
        '--name',
        'srvpkg-host',
      ]);
      assert.equal(enroll.code, 0, enroll.stderr);
      const client = startPofr(['client', 'run', '--state', state, '--batch', '1000']);
      daemons.push(client);
      const deadline = Date.now() + 90_000;
      for (;;) {
        const rows = jsonLines(
          run('runuser', ['-u', 'pofr', '--', '/usr/bin/pofr', 'server', 'clients', '--data', DATA, '--json'])
            .stdout,
        );
        if (rows.some((r) => r.name === 'srvpkg-host' && typeof r.last_seq === 'number')) break;
        assert.ok(Date.now() < deadline, `no batch reached the installed server:\n${log}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(await client.stop(15_000), 0);
      const verify = run('runuser', ['-u', 'pofr', '--', '/usr/bin/pofr', 'verify', '--data', DATA]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.equal(
        run('/usr/bin/pofr', ['server', 'package-client', '--help']).code,
        0,
        'the installed server can package clients',
      );
      server.kill('SIGTERM');
      assert.equal((await once(server, 'exit'))[0], 0, log);

      assert.equal(run('dpkg', ['-r', 'pofr-server']).code, 0);
      assert.ok(!existsSync('/usr/bin/pofr') && !existsSync('/usr/lib/pofr'), 'program files are gone');
      const purge = run('dpkg', ['-P', 'pofr-server']);
      assert.equal(purge.code, 0, purge.stderr);
      assert.match(purge.stderr, /kept \/var\/lib\/pofr-server \(the evidence store/);
      assert.ok(!existsSync('/etc/default/pofr-server'), 'the conffile is purged');
      assert.notEqual(run('dpkg-query', ['-W', 'pofr-server']).code, 0);
    } finally {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      if (run('dpkg-query', ['-W', 'pofr-server']).code === 0) run('dpkg', ['-P', 'pofr-server']);
      // Kept by purge on purpose (evidence); this test made them, so it removes them.
      rmSync(DATA, { recursive: true, force: true });
      if (run('getent', ['passwd', 'pofr']).code === 0) run('userdel', ['pofr']);
      if (run('getent', ['group', 'pofr']).code === 0) run('groupdel', ['pofr']);
    }
  });
});
