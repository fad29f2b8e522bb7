import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
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
  sshKeyPairOf,
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

  test('a public key starting with zero bytes is kept whole (ssh2 keygen strips them: mscdex/ssh2#1390)', () => {
    // About one key in 256 starts with 0x00; search for one so the case is always exercised.
    let key: KeyObject | undefined;
    for (let i = 0; i < 100_000 && !key; i++) {
      const candidate = generateKeyPairSync('ed25519').privateKey;
      const x = Buffer.from(candidate.export({ format: 'jwk' }).x ?? '', 'base64url');
      if (x[0] === 0) key = candidate;
    }
    assert.ok(key, 'no ed25519 key with a leading zero byte in 100,000 tries');
    const pair = sshKeyPairOf(key);
    const blob = publicKeyBlob(pair.publicKey);
    assert.equal(blob.length, 4 + 11 + 4 + 32);
    const parsed = ssh2.utils.parseKey(pair.privateKey);
    assert.ok(!(parsed instanceof Error), `ssh2 refused the key: ${(parsed as Error).message}`);
    assert.deepEqual(parsed.getPublicSSH(), blob);
    // What ssh2 signs with this key verifies against node's own public half: the same key, not a copy.
    const data = Buffer.from('pofr');
    const signature = parsed.sign(data);
    assert.ok(verify(null, data, key, signature));
    assert.ok(parsed.verify(data, sign(null, data, key)));
  });

  test('every one of 2,000 generated identities loads in ssh2 and matches its public line', () => {
    for (let i = 0; i < 2000; i++) {
      const pair = generateSshKeyPair();
      const parsed = ssh2.utils.parseKey(pair.privateKey);
      assert.ok(!(parsed instanceof Error), `key ${i} refused: ${(parsed as Error).message}`);
      assert.deepEqual(parsed.getPublicSSH(), publicKeyBlob(pair.publicKey), `key ${i}`);
    }
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
      // ssh-keygen reads the private key file too, and derives the same public line from it.
      const priv = join(dir, 'key');
      writeFileSync(priv, pair.privateKey, { mode: 0o600 });
      const derived = execFileSync('ssh-keygen', ['-y', '-f', priv], { encoding: 'utf8' });
      assert.equal(
        derived.trim().split(' ').slice(0, 2).join(' '),
        pair.publicKey.split(' ').slice(0, 2).join(' '),
      );
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
