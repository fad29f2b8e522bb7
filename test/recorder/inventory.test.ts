import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { recordSchema } from '../../src/protocol/index.js';
import { InventoryWatcher, readInventory, readTimezone } from '../../src/recorder/index.js';
import { FIXTURE_PROC } from './proc-tree.js';

let dir = '';
let etcRoot = '';
let sysRoot = '';
const savedTz = process.env.TZ;

function write(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'pofr-inventory-'));
  etcRoot = join(dir, 'etc');
  sysRoot = join(dir, 'sys');
  write(
    join(etcRoot, 'os-release'),
    'NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
  );
  write(
    join(etcRoot, 'passwd'),
    'root:x:0:0:root:/root:/bin/bash\n# comment\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh\nbroken-line\n',
  );
  write(join(etcRoot, 'group'), 'root:x:0:\nwheel:x:10:alice,bob\n');
  write(join(etcRoot, 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  symlinkSync('/usr/share/zoneinfo/Europe/Paris', join(etcRoot, 'localtime'));
  write(join(sysRoot, 'class/net/pofrdown0/address'), '02:00:00:aa:bb:cc\n');
  write(join(sysRoot, 'bus/usb/devices/1-1/idVendor'), '046d\n');
  write(join(sysRoot, 'bus/usb/devices/1-1/idProduct'), 'c52b\n');
  write(join(sysRoot, 'bus/usb/devices/1-1/product'), 'USB Receiver\n');
  write(join(sysRoot, 'bus/usb/devices/1-1:1.0/bInterfaceClass'), '03\n');
  delete process.env.TZ;
});

after(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
  rmSync(dir, { recursive: true, force: true });
});

test('inventory reads os, users, groups, timezone, machine id, routes, devices and down links', () => {
  const inv = readInventory({ procRoot: FIXTURE_PROC, etcRoot, sysRoot });
  recordSchema.parse({ type: 'inventory', t: 1, inventory: inv });
  assert.equal(inv.os, 'Debian GNU/Linux 12 (bookworm)');
  assert.equal(inv.timezone, 'Europe/Paris');
  assert.equal(inv.machine_id, '0123456789abcdef0123456789abcdef');
  assert.deepEqual(inv.users, [
    { uid: 0, gid: 0, name: 'root', home: '/root', shell: '/bin/bash' },
    { uid: 1000, gid: 1000, name: 'alice', home: '/home/alice', shell: '/bin/zsh' },
  ]);
  assert.deepEqual(inv.groups, [
    { gid: 0, name: 'root', members: [] },
    { gid: 10, name: 'wheel', members: ['alice', 'bob'] },
  ]);
  assert.deepEqual(inv.routes, [
    { family: 4, destination: '0.0.0.0/0', gateway: '10.0.2.1', dev: 'eth0', metric: 100 },
    { family: 4, destination: '10.0.2.0/24', gateway: '0.0.0.0', dev: 'eth0', metric: 100 },
    { family: 6, destination: '2001:db8::/32', gateway: '::', dev: 'eth0', metric: 256 },
    { family: 6, destination: '::/0', gateway: 'fe80::1', dev: 'eth0', metric: 1024 },
  ]);
  assert.deepEqual(inv.devices, [
    { bus: 'usb', id: '1-1', vendor_id: '046d', product_id: 'c52b', name: 'USB Receiver', serial: null },
  ]);
  assert.deepEqual(
    inv.interfaces.find((i) => i.name === 'pofrdown0'),
    { name: 'pofrdown0', mac: '02:00:00:aa:bb:cc', addresses: [] },
  );
  assert.ok(inv.interfaces.some((i) => i.name === 'lo' && i.addresses.includes('127.0.0.1/8')));
});

test('timezone: TZ wins, then /etc/timezone, then the localtime link, else UTC', () => {
  process.env.TZ = ':America/New_York';
  assert.equal(readTimezone(etcRoot), 'America/New_York');
  delete process.env.TZ;
  assert.equal(readTimezone(join(dir, 'nowhere')), 'UTC');
  const other = join(dir, 'etc2');
  write(join(other, 'timezone'), 'Asia/Tokyo\n');
  assert.equal(readTimezone(other), 'Asia/Tokyo');
});

test('the watcher emits at first poll, then only on change, looking at most every check interval', () => {
  const watcher = new InventoryWatcher({ procRoot: FIXTURE_PROC, etcRoot, sysRoot, checkEveryMs: 30_000 });
  const t0 = 1_700_000_000_000_000;
  const first = watcher.poll(t0);
  assert.equal(first.length, 1);
  recordSchema.parse(first[0]);
  assert.deepEqual(watcher.poll(t0 + 31_000_000), []);
  write(join(etcRoot, 'group'), 'root:x:0:\nwheel:x:10:alice,bob\ndocker:x:999:alice\n');
  assert.deepEqual(watcher.poll(t0 + 32_000_000), [], 'not checked again within 30 s');
  const changed = watcher.poll(t0 + 62_000_000);
  assert.equal(changed.length, 1);
  assert.ok(changed[0].type === 'inventory');
  assert.equal(changed[0].inventory.groups.length, 3);
});

test('the real host inventory passes the record schema', () => {
  const inv = readInventory();
  recordSchema.parse({ type: 'inventory', t: Date.now() * 1000, inventory: inv });
  assert.ok(inv.hostname.length > 0);
  assert.ok(inv.users.some((u) => u.uid === 0));
});
