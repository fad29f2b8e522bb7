import type { Kysely, Migration } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/**
 * What each process touched beyond its files and sockets (issue 7):
 * - per process image its cgroup, the container id that cgroup names, and its pid, net, mnt and
 *   user namespace inodes (NULL for rows recorded before);
 * - `dns_queries`: which process looked up which name, when (glibc resolver probes);
 * - `cred_changes`: a process changing its user or group ids without an exec (setuid and friends).
 */
export function processContextMigration(caps: Capabilities): Migration {
  const B = caps.bytesType;
  return {
    async up(db: Kysely<unknown>) {
      for (const [name, type] of [
        ['cgroup', 'text'],
        ['cgroup_raw', B],
        ['container_id', 'text'],
        ['ns_pid', 'bigint'],
        ['ns_net', 'bigint'],
        ['ns_mnt', 'bigint'],
        ['ns_user', 'bigint'],
      ] as const) {
        await db.schema.alterTable('processes').addColumn(name, type).execute();
      }
      await db.schema
        .createIndex('processes_container')
        .on('processes')
        .columns(['container_id', 'start'])
        .execute();
      await db.schema
        .createTable('dns_queries')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('ord', 'bigint', (c) => c.notNull())
        .addColumn('t', 'bigint', (c) => c.notNull())
        .addColumn('process_id', 'bigint')
        .addColumn('pid', 'bigint', (c) => c.notNull())
        .addColumn('start_ticks', 'bigint', (c) => c.notNull())
        .addColumn('func', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('name_raw', B)
        .execute();
      await db.schema.createIndex('dns_queries_time').on('dns_queries').columns(['host_id', 't']).execute();
      await db.schema
        .createIndex('dns_queries_process')
        .on('dns_queries')
        .columns(['process_id', 't'])
        .execute();
      await db.schema
        .createTable('cred_changes')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('ord', 'bigint', (c) => c.notNull())
        .addColumn('t', 'bigint', (c) => c.notNull())
        .addColumn('process_id', 'bigint')
        .addColumn('pid', 'bigint', (c) => c.notNull())
        .addColumn('start_ticks', 'bigint', (c) => c.notNull())
        .addColumn('call', 'text', (c) => c.notNull())
        .addColumn('old_ruid', 'bigint', (c) => c.notNull())
        .addColumn('old_euid', 'bigint', (c) => c.notNull())
        .addColumn('old_rgid', 'bigint', (c) => c.notNull())
        .addColumn('old_egid', 'bigint', (c) => c.notNull())
        .addColumn('new_ruid', 'bigint', (c) => c.notNull())
        .addColumn('new_euid', 'bigint', (c) => c.notNull())
        .addColumn('new_rgid', 'bigint', (c) => c.notNull())
        .addColumn('new_egid', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('cred_changes_time').on('cred_changes').columns(['host_id', 't']).execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('cred_changes').execute();
      await db.schema.dropTable('dns_queries').execute();
      await db.schema.dropIndex('processes_container').execute();
      for (const name of ['ns_user', 'ns_mnt', 'ns_net', 'ns_pid', 'container_id', 'cgroup_raw', 'cgroup']) {
        await db.schema.alterTable('processes').dropColumn(name).execute();
      }
    },
  };
}
