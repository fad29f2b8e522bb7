import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seedFleet } from '../../bench/seed/seed-fleet.js';
import { cursorOf, type TimelineEvent, timeline } from '../../src/query/index.js';
import { DIALECTS, withStore } from '../helpers/store-dialects.js';

const END = 1_795_000_000_000_000;
const key = (e: TimelineEvent) => `${e.kind}:${cursorOf(e).id}:${e.time}:${e.ord}`;

for (const dialect of DIALECTS) {
  test(`[${dialect}] pages of the timeline, each after the last one's cursor, give the whole timeline once, in order`, (t) =>
    withStore(t, dialect, async (store) => {
      const r = await seedFleet(store, { events: 2500, hosts: 2, days: 1, end: END, seed: 5 });
      const hosts = [r.hosts[0].host_id];
      const all = await timeline(store, { hosts, limit: 100_000 });
      assert.ok(all.length > 1200, `${all.length} events`);
      // Keyframes write many rows at one (time, ord): pages must cut through them without loss.
      const instants = new Map<string, number>();
      for (const e of all) instants.set(`${e.time}:${e.ord}`, (instants.get(`${e.time}:${e.ord}`) ?? 0) + 1);
      const widest = Math.max(...instants.values());
      assert.ok(widest > 14, `at most ${widest} events share an instant`);
      const paged: TimelineEvent[] = [];
      let after: ReturnType<typeof cursorOf> | undefined;
      for (let i = 0; i < 200; i++) {
        const page = await timeline(store, { hosts, limit: 7, after });
        if (page.length === 0) break;
        paged.push(...page);
        after = cursorOf(page[page.length - 1]);
      }
      assert.deepEqual(paged.map(key), all.map(key).slice(0, paged.length));
      assert.equal(paged.length, Math.min(all.length, 200 * 7));
    }));

  test(`[${dialect}] timeline filters: path keeps file events, port keeps endpoint events, user and command narrow processes (gaps stay)`, (t) =>
    withStore(t, dialect, async (store) => {
      const r = await seedFleet(store, { events: 4000, hosts: 5, days: 1, end: END, seed: 9 });
      const victim = [r.hosts.find((h) => h.incident)!.host_id];
      const shadow = await timeline(store, { hosts: victim, path: '/etc/shadow' });
      assert.ok(shadow.length > 0);
      assert.ok(shadow.every((e) => e.kind === 'gap' || ('path' in e && e.path === '/etc/shadow')));
      const c2 = await timeline(store, { hosts: victim, port: 4444 });
      assert.ok(c2.some((e) => e.kind === 'endpoint_open'));
      assert.ok(c2.every((e) => e.kind === 'gap' || ('remote_port' in e && e.remote_port === 4444)));
      const www = await timeline(store, { hosts: victim, user: 'www-data', kinds: ['process_start'] });
      assert.ok(www.length > 0 && www.every((e) => 'user' in e && e.user === 'www-data'));
      const curl = await timeline(store, { hosts: victim, command: '^curl ', kinds: ['process_start'] });
      assert.ok(
        curl.length > 0 && curl.every((e) => 'cmdline' in e && String(e.cmdline).startsWith('curl ')),
      );
      const de = await timeline(store, { country: 'de', kinds: ['endpoint_open'] });
      assert.ok(de.every((e) => 'country' in e && e.country === 'DE'));
    }));
}
