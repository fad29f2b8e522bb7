import { sql, type Transaction } from 'kysely';
import type { Inventory } from '../protocol/index.js';
import type { Database } from '../store/index.js';

type VersionedTable = 'users' | 'groups' | 'interfaces' | 'routes' | 'devices';
type Value = string | number | null;
type Row = Record<string, Value>;

// The content columns of each versioned table, in a fixed order: a row's identity for change detection.
const COLUMNS: Record<VersionedTable, readonly string[]> = {
  users: ['uid', 'gid', 'name', 'home', 'shell'],
  groups: ['gid', 'name', 'members'],
  interfaces: ['name', 'mac', 'addresses'],
  routes: ['family', 'destination', 'gateway', 'dev', 'metric'],
  devices: ['bus', 'device_id', 'vendor_id', 'product_id', 'name', 'serial'],
};

const MAX_PARAMS = 30_000;

/** The inventory as rows of the versioned tables (list columns as JSON arrays, as argv is). */
function inventoryRows(inv: Inventory): Record<VersionedTable, Row[]> {
  return {
    users: inv.users.map((u) => ({ uid: u.uid, gid: u.gid, name: u.name, home: u.home, shell: u.shell })),
    groups: inv.groups.map((g) => ({ gid: g.gid, name: g.name, members: JSON.stringify(g.members) })),
    interfaces: inv.interfaces.map((i) => ({
      name: i.name,
      mac: i.mac,
      addresses: JSON.stringify(i.addresses),
    })),
    routes: inv.routes.map((r) => ({
      family: r.family,
      destination: r.destination,
      gateway: r.gateway,
      dev: r.dev,
      metric: r.metric,
    })),
    devices: inv.devices.map((d) => ({
      bus: d.bus,
      device_id: d.id,
      vendor_id: d.vendor_id,
      product_id: d.product_id,
      name: d.name,
      serial: d.serial,
    })),
  };
}

/**
 * Versions users, groups, interfaces, routes and devices at `t`: rows that vanished or changed get
 * valid_to = t, new and changed rows start at valid_from = t, unchanged rows are left alone, so
 * "who was uid 1000 on that day" has one answer.
 */
export async function syncInventory(trx: Transaction<Database>, hostId: string, t: number, inv: Inventory) {
  const wanted = inventoryRows(inv);
  for (const table of Object.keys(COLUMNS) as VersionedTable[]) {
    await syncTable(trx, hostId, t, table, wanted[table]);
  }
}

async function syncTable(
  trx: Transaction<Database>,
  hostId: string,
  t: number,
  table: VersionedTable,
  rows: Row[],
) {
  const cols = COLUMNS[table];
  const keyOf = (r: Row) => JSON.stringify(cols.map((c) => (typeof r[c] === 'bigint' ? Number(r[c]) : r[c])));
  // Kysely cannot type a table chosen at run time; the column names come from COLUMNS above.
  const db = trx as unknown as Transaction<
    Record<VersionedTable, Row & { host_id: string; valid_from: number; valid_to: number | null }>
  >;
  const current = await db
    .selectFrom(table)
    .select(cols as string[] as never[])
    .where('host_id', '=', hostId)
    .where('valid_to', 'is', null)
    .execute();
  const have = new Map<string, Row>();
  for (const r of current as Row[]) have.set(keyOf(r), r);
  const want = new Map<string, Row>();
  for (const r of rows) want.set(keyOf(r), r);
  for (const [key, r] of have) {
    if (want.has(key)) continue;
    let q = db
      .updateTable(table)
      .set({ valid_to: t })
      .where('host_id', '=', hostId)
      .where('valid_to', 'is', null);
    for (const c of cols) {
      const v = r[c];
      q = v === null ? q.where(sql.ref(c), 'is', null) : q.where(sql.ref(c), '=', v);
    }
    await q.execute();
  }
  const added = [...want]
    .filter(([key]) => !have.has(key))
    .map(([, r]) => ({ ...r, host_id: hostId, valid_from: t, valid_to: null }));
  const perRow = cols.length + 3;
  for (let i = 0; i < added.length; i += Math.floor(MAX_PARAMS / perRow)) {
    await db
      .insertInto(table)
      .values(added.slice(i, i + Math.floor(MAX_PARAMS / perRow)) as never)
      .execute();
  }
}
