import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureHostKey, ensureSharedHostKey } from '../../src/roles/server/host-key.js';
import { withStore } from '../helpers/store-dialects.js';

test('[postgres] every node of one database serves the same host key; a data directory with another is refused', (t) =>
  withStore(t, 'postgres', async (store) => {
    const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'pofr-node-')));
    try {
      const [a, b, c] = dirs as [string, string, string];
      const first = await ensureSharedHostKey(store, a);
      const second = await ensureSharedHostKey(store, b);
      assert.equal(second.fingerprint, first.fingerprint);
      assert.equal(
        readFileSync(join(b, 'ssh_host_ed25519_key'), 'utf8'),
        first.privateKey,
        'the joining node keeps the key in its data directory too',
      );
      assert.equal(ensureHostKey(b).fingerprint, first.fingerprint);
      ensureHostKey(c); // a directory that made a key of its own before joining
      await assert.rejects(ensureSharedHostKey(store, c), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'POFR_STORE_CONFIG');
        assert.match(e.message, /another SSH host key .* remove .*ssh_host_ed25519_key/);
        return true;
      });
      // Analysts' read-only SQL does not reach it.
      await assert.rejects(
        store.readOnlyQuery('SELECT value FROM server_settings'),
        /pofr's tables only|permission/,
      );
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }));

test('[sqlite] the host key is the data directory’s own', (t) =>
  withStore(t, 'sqlite', async (store) => {
    const dir = mkdtempSync(join(tmpdir(), 'pofr-node-'));
    try {
      const k = await ensureSharedHostKey(store, dir);
      assert.equal(k.fingerprint, ensureHostKey(dir).fingerprint);
      const rows = await store.db.selectFrom('server_settings').select('name').execute();
      assert.deepEqual(rows, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }));
