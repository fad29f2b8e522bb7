import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import ssh2 from 'ssh2';
import { isPofrError } from '../../src/errors.js';
import {
  generateSshKeyPair,
  normalizeFingerprint,
  publicKeyBlob,
  sshFingerprint,
} from '../../src/transport/index.js';

function sshKeygenAvailable(): boolean {
  try {
    execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    return (e as { status?: number }).status !== undefined && (e as { status?: number }).status !== 127;
  }
}

describe('SSH keys', () => {
  test('generates an ed25519 pair whose public line matches its private key', () => {
    const pair = generateSshKeyPair();
    assert.match(pair.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    assert.match(pair.publicKey, /^ssh-ed25519 AAAA[A-Za-z0-9+/]+=* pofr$/);
    const parsed = ssh2.utils.parseKey(pair.privateKey);
    assert.ok(!(parsed instanceof Error));
    assert.deepEqual(parsed.getPublicSSH(), publicKeyBlob(pair.publicKey));
  });

  test('fingerprint of a line and of its blob agree and look like OpenSSH', () => {
    const pair = generateSshKeyPair();
    const fp = sshFingerprint(pair.publicKey);
    assert.match(fp, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.equal(sshFingerprint(publicKeyBlob(pair.publicKey)), fp);
    assert.equal(normalizeFingerprint(fp.slice(7)), fp);
    assert.throws(
      () => normalizeFingerprint('MD5:aa:bb'),
      (e) => isPofrError(e) && e.code === 'POFR_USAGE',
    );
  });

  test('fingerprint equals what ssh-keygen -lf prints', {
    skip: !sshKeygenAvailable() && 'ssh-keygen not installed',
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'pofr-sshkey-'));
    try {
      const pair = generateSshKeyPair();
      const file = join(dir, 'key.pub');
      writeFileSync(file, `${pair.publicKey}\n`);
      const out = execFileSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' });
      assert.equal(out.split(' ')[1], sshFingerprint(pair.publicKey));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('refuses a public key line whose data is another algorithm', () => {
    const pair = generateSshKeyPair();
    const forged = pair.publicKey.replace('ssh-ed25519', 'ssh-rsa');
    assert.throws(
      () => publicKeyBlob(forged),
      (e) => isPofrError(e) && /not a ssh-rsa key/.test(e.message),
    );
  });
});
