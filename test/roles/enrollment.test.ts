import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  authorizeHostKey,
  createToken,
  enrollWithPassword,
  enrollWithToken,
  findHost,
  listClients,
  removeHost,
  setHostStatus,
} from '../../src/roles/server/enrollment.js';
import {
  clearRegistrationPassword,
  setRegistrationPassword,
} from '../../src/roles/server/registration-password.js';
import type { Store } from '../../src/store/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

const input = (token: string, n = 1) => ({
  token,
  name: `web-${n}`,
  signingKey: `-----BEGIN PUBLIC KEY-----\nkey${n}\n-----END PUBLIC KEY-----\n`,
  sshKey: `ssh-ed25519 AAAA${n} pofr`,
  sshFingerprint: `SHA256:fp${n}`,
  remote: '127.0.0.1:50000',
});

async function enrollments(store: Store) {
  return store.db.selectFrom('enrollments').selectAll().orderBy('id').execute();
}

for (const dialect of DIALECTS) {
  describe(`[${dialect}] enrollment`, () => {
    test('a token approves its client at once when made with --approve, and is used up after --uses', (t) =>
      withStore(t, dialect, async (store) => {
        const token = await createToken(store, { ttlMs: 60_000, uses: 1, approve: true });
        const first = await enrollWithToken(store, input(token, 1));
        assert.equal(first.ok && first.status, 'approved');
        const second = await enrollWithToken(store, input(token, 2));
        assert.equal(second.ok, false);
        assert.equal(!second.ok && second.code, 'POFR_ENROLL_TOKEN');
        const audit = await enrollments(store);
        assert.deepEqual(
          audit.map((a) => a.outcome),
          ['approved', 'refused'],
        );
        const stored = await store.db.selectFrom('enrollment_tokens').selectAll().execute();
        assert.equal(stored.length, 1);
        assert.notEqual(stored[0].token_hash, token, 'only the hash of a token is stored');
      }));

    test('an expired or unknown token is refused and the refusal is audited', (t) =>
      withStore(t, dialect, async (store) => {
        const token = await createToken(store, { ttlMs: 1000, uses: 5, approve: false }, 1_000_000);
        const late = await enrollWithToken(store, input(token), 1_000_000 + 2_000_000);
        assert.equal(!late.ok && late.code, 'POFR_ENROLL_TOKEN');
        assert.match(!late.ok ? late.message : '', /expired/);
        const unknown = await enrollWithToken(store, input('pofr_nope'));
        assert.match(!unknown.ok ? unknown.message : '', /unknown/);
        assert.equal((await listClients(store)).length, 0);
        assert.equal((await enrollments(store)).length, 2);
      }));

    test('re-enrolling the same key returns the same host without using the token again', (t) =>
      withStore(t, dialect, async (store) => {
        const token = await createToken(store, { ttlMs: 60_000, uses: 1, approve: false });
        const a = await enrollWithToken(store, input(token));
        const b = await enrollWithToken(store, input(token));
        assert.ok(a.ok && b.ok);
        assert.equal(a.host_id, b.host_id);
        assert.equal(b.status, 'pending');
        assert.equal((await listClients(store)).length, 1);
      }));

    test('only an approved host may write, only with its own key, and revocation ends it', (t) =>
      withStore(t, dialect, async (store) => {
        const token = await createToken(store, { ttlMs: 60_000, uses: 2, approve: false });
        const a = await enrollWithToken(store, input(token, 1));
        assert.ok(a.ok);
        const pending = await authorizeHostKey(store, a.host_id, 'SHA256:fp1');
        assert.equal(pending.ok, false);
        assert.match(!pending.ok ? pending.reason : '', /awaits approval/);
        await setHostStatus(store, 'web-1', 'approved');
        assert.deepEqual(await authorizeHostKey(store, a.host_id, 'SHA256:fp1'), {
          ok: true,
          hostId: a.host_id,
        });
        const otherKey = await authorizeHostKey(store, a.host_id, 'SHA256:fp2');
        assert.equal(otherKey.ok, false, "another host's key cannot write as this host");
        await setHostStatus(store, a.host_id, 'revoked');
        const revoked = await authorizeHostKey(store, a.host_id, 'SHA256:fp1');
        assert.match(!revoked.ok ? revoked.reason : '', /revoked/);
        const again = await enrollWithToken(store, input(token, 1));
        assert.equal(again.ok, false, 'a revoked key cannot enroll itself back');
      }));

    test('remove deletes a host and its rows; unknown names are a clear error', (t) =>
      withStore(t, dialect, async (store) => {
        const token = await createToken(store, { ttlMs: 60_000, uses: 1, approve: true });
        const a = await enrollWithToken(store, input(token));
        assert.ok(a.ok);
        await removeHost(store, 'web-1');
        assert.equal((await listClients(store)).length, 0);
        await assert.rejects(findHost(store, 'web-1'), { code: 'POFR_HOST_UNKNOWN' });
      }));

    test('the registration password enrolls as pending (or approved when set so); a wrong one is refused and audited', (t) =>
      withStore(t, dialect, async (store) => {
        const none = await enrollWithPassword(store, { ...input('', 1), password: 'correct horse battery' });
        assert.match(!none.ok ? none.message : '', /no registration password/);
        await assert.rejects(setRegistrationPassword(store, 'short', false), { code: 'POFR_USAGE' });
        await setRegistrationPassword(store, 'correct horse battery', false);
        const stored = await store.db.selectFrom('server_settings').select('value').executeTakeFirstOrThrow();
        assert.ok(!stored.value.includes('correct horse'), 'only a salted hash is stored');
        const wrong = await enrollWithPassword(store, { ...input('', 1), password: 'correct horse batterY' });
        assert.match(!wrong.ok ? wrong.message : '', /wrong registration password/);
        const right = await enrollWithPassword(store, { ...input('', 1), password: 'correct horse battery' });
        assert.equal(right.ok && right.status, 'pending');
        await setRegistrationPassword(store, 'another long passphrase', true);
        const approved = await enrollWithPassword(store, {
          ...input('', 2),
          password: 'another long passphrase',
        });
        assert.equal(approved.ok && approved.status, 'approved');
        await clearRegistrationPassword(store);
        const cleared = await enrollWithPassword(store, {
          ...input('', 3),
          password: 'another long passphrase',
        });
        assert.equal(cleared.ok, false);
        const audit = await enrollments(store);
        assert.deepEqual(
          audit.map((a) => [a.method, a.outcome]),
          [
            ['password', 'refused'],
            ['password', 'refused'],
            ['password', 'pending'],
            ['password', 'approved'],
            ['password', 'refused'],
          ],
        );
      }));
  });
}
