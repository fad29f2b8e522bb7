import type { Kysely, Migration } from 'kysely';
import type { Capabilities } from '../capabilities.js';

/** The core tables of ARCHITECTURE.md; docs/schema.md explains each column. */
export function initialMigration(caps: Capabilities): Migration {
  const B = caps.bytesType;
  return {
    async up(db: Kysely<unknown>) {
      const s = db.schema;
      await s
        .createTable('hosts')
        .addColumn('host_id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('ssh_key', 'text', (c) => c.notNull())
        .addColumn('ssh_fingerprint', 'text', (c) => c.notNull().unique())
        .addColumn('signing_key', 'text', (c) => c.notNull())
        .addColumn('enrolled_at', 'bigint', (c) => c.notNull())
        .addColumn('approved_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .addColumn('os', 'text')
        .addColumn('kernel', 'text')
        .addColumn('arch', 'text')
        .addColumn('timezone', 'text')
        .addColumn('machine_id', 'text')
        .addColumn('boot_id', 'text')
        .addColumn('boot_time', 'bigint')
        .addColumn('first_seen', 'bigint')
        .addColumn('last_seen', 'bigint')
        .addColumn('last_batch_at', 'bigint')
        .addColumn('last_seq', 'bigint')
        .addColumn('last_hash', 'text')
        .execute();
      await s.createIndex('hosts_name').on('hosts').column('name').execute();

      await s
        .createTable('enrollment_tokens')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('uses_left', 'integer', (c) => c.notNull())
        .addColumn('approve', 'integer', (c) => c.notNull())
        .execute();

      await s
        .createTable('enrollments')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text')
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text')
        .addColumn('remote', 'text')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .execute();

      await s
        .createTable('batches')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('payload_sha256', 'text', (c) => c.notNull())
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('t_from', 'bigint', (c) => c.notNull())
        .addColumn('t_to', 'bigint', (c) => c.notNull())
        .addColumn('record_count', 'integer', (c) => c.notNull())
        .addColumn('bytes', 'integer', (c) => c.notNull())
        .addColumn('received_at', 'bigint', (c) => c.notNull())
        .addColumn('chain', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('batches_pk', ['host_id', 'seq'])
        .execute();
      await s.createIndex('batches_hash').on('batches').columns(['host_id', 'hash']).execute();

      await s
        .createTable('batch_evidence')
        .addColumn('host_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('raw', B, (c) => c.notNull())
        .addPrimaryKeyConstraint('batch_evidence_pk', ['host_id', 'seq'])
        .addForeignKeyConstraint(
          'batch_evidence_batch',
          ['host_id', 'seq'],
          'batches',
          ['host_id', 'seq'],
          (c) => c.onDelete('cascade'),
        )
        .execute();

      await s
        .createTable('refused_batches')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text')
        .addColumn('seq', 'bigint')
        .addColumn('received_at', 'bigint', (c) => c.notNull())
        .addColumn('code', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('bytes', 'integer', (c) => c.notNull())
        .addColumn('raw', B)
        .execute();

      await s
        .createTable('gaps')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('t_from', 'bigint')
        .addColumn('t_to', 'bigint')
        .addColumn('detail', 'text', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('gaps_host').on('gaps').columns(['host_id', 'seq']).execute();

      await s
        .createTable('processes')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('pid', 'bigint', (c) => c.notNull())
        .addColumn('start_ticks', 'bigint', (c) => c.notNull())
        .addColumn('exec_index', 'integer', (c) => c.notNull())
        .addColumn('start', 'bigint', (c) => c.notNull())
        .addColumn('end', 'bigint')
        .addColumn('end_reason', 'text')
        .addColumn('ppid', 'bigint', (c) => c.notNull())
        .addColumn('parent_id', 'bigint')
        .addColumn('exe', 'text')
        .addColumn('exe_raw', B)
        .addColumn('comm', 'text', (c) => c.notNull())
        .addColumn('comm_raw', B)
        .addColumn('argv', 'text', (c) => c.notNull())
        .addColumn('argv_raw', B)
        .addColumn('cmdline', 'text', (c) => c.notNull())
        .addColumn('cwd', 'text')
        .addColumn('cwd_raw', B)
        .addColumn('ruid', 'bigint', (c) => c.notNull())
        .addColumn('euid', 'bigint', (c) => c.notNull())
        .addColumn('rgid', 'bigint', (c) => c.notNull())
        .addColumn('egid', 'bigint', (c) => c.notNull())
        .addColumn('user', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('observer', 'integer', (c) => c.notNull())
        .addColumn('open_ord', 'bigint', (c) => c.notNull())
        .addColumn('close_ord', 'bigint')
        .addUniqueConstraint('processes_identity', ['host_id', 'boot_id', 'pid', 'start_ticks', 'exec_index'])
        .execute();
      await s.createIndex('processes_start').on('processes').columns(['host_id', 'start']).execute();
      await s.createIndex('processes_open').on('processes').columns(['host_id', 'end']).execute();
      await s.createIndex('processes_parent').on('processes').column('parent_id').execute();

      await s
        .createTable('file_opens')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('process_id', 'bigint', (c) => c.notNull())
        .addColumn('pid', 'bigint', (c) => c.notNull())
        .addColumn('fd', 'bigint', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('path_raw', B)
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('first_seen', 'bigint', (c) => c.notNull())
        .addColumn('last_seen', 'bigint', (c) => c.notNull())
        .addColumn('is_open', 'integer', (c) => c.notNull())
        .addColumn('open_ord', 'bigint', (c) => c.notNull())
        .addColumn('close_ord', 'bigint')
        .execute();
      await s
        .createIndex('file_opens_process')
        .on('file_opens')
        .columns(['process_id', 'fd', 'is_open'])
        .execute();
      await s.createIndex('file_opens_time').on('file_opens').columns(['host_id', 'first_seen']).execute();
      await s.createIndex('file_opens_path').on('file_opens').columns(['host_id', 'path']).execute();

      await s
        .createTable('endpoints')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('boot_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('process_id', 'bigint')
        .addColumn('pid', 'bigint')
        .addColumn('proto', 'text', (c) => c.notNull())
        .addColumn('family', 'integer', (c) => c.notNull())
        .addColumn('local_ip', 'text', (c) => c.notNull())
        .addColumn('local_port', 'integer', (c) => c.notNull())
        .addColumn('remote_ip', 'text', (c) => c.notNull())
        .addColumn('remote_port', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('inode', 'bigint', (c) => c.notNull())
        .addColumn('first_seen', 'bigint', (c) => c.notNull())
        .addColumn('last_seen', 'bigint', (c) => c.notNull())
        .addColumn('is_open', 'integer', (c) => c.notNull())
        .addColumn('country', 'text')
        .addColumn('city', 'text')
        .addColumn('fqdn', 'text')
        .addColumn('open_ord', 'bigint', (c) => c.notNull())
        .addColumn('close_ord', 'bigint')
        .execute();
      await s.createIndex('endpoints_key').on('endpoints').columns(['host_id', 'key', 'is_open']).execute();
      await s.createIndex('endpoints_time').on('endpoints').columns(['host_id', 'first_seen']).execute();
      await s.createIndex('endpoints_remote').on('endpoints').columns(['remote_ip']).execute();
      await s.createIndex('endpoints_process').on('endpoints').column('process_id').execute();

      await s
        .createTable('endpoint_states')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('endpoint_id', 'bigint', (c) => c.notNull())
        .addColumn('host_id', 'text', (c) => c.notNull())
        .addColumn('t', 'bigint', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('ord', 'bigint', (c) => c.notNull())
        .execute();
      await s.createIndex('endpoint_states_endpoint').on('endpoint_states').column('endpoint_id').execute();

      await s
        .createTable('users')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('uid', 'bigint', (c) => c.notNull())
        .addColumn('gid', 'bigint', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('home', 'text', (c) => c.notNull())
        .addColumn('shell', 'text', (c) => c.notNull())
        .addColumn('valid_from', 'bigint', (c) => c.notNull())
        .addColumn('valid_to', 'bigint')
        .execute();
      await s.createIndex('users_host_uid').on('users').columns(['host_id', 'uid', 'valid_from']).execute();
      await s
        .createTable('groups')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('gid', 'bigint', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('members', 'text', (c) => c.notNull())
        .addColumn('valid_from', 'bigint', (c) => c.notNull())
        .addColumn('valid_to', 'bigint')
        .execute();
      await s
        .createTable('interfaces')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('mac', 'text')
        .addColumn('addresses', 'text', (c) => c.notNull())
        .addColumn('valid_from', 'bigint', (c) => c.notNull())
        .addColumn('valid_to', 'bigint')
        .execute();
      await s
        .createTable('routes')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('family', 'integer', (c) => c.notNull())
        .addColumn('destination', 'text', (c) => c.notNull())
        .addColumn('gateway', 'text', (c) => c.notNull())
        .addColumn('dev', 'text', (c) => c.notNull())
        .addColumn('metric', 'bigint', (c) => c.notNull())
        .addColumn('valid_from', 'bigint', (c) => c.notNull())
        .addColumn('valid_to', 'bigint')
        .execute();
      await s
        .createTable('devices')
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('bus', 'text', (c) => c.notNull())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('vendor_id', 'text')
        .addColumn('product_id', 'text')
        .addColumn('name', 'text')
        .addColumn('serial', 'text')
        .addColumn('valid_from', 'bigint', (c) => c.notNull())
        .addColumn('valid_to', 'bigint')
        .execute();
      await s
        .createTable('alerts')
        .addColumn('id', caps.idType, caps.idColumn)
        .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.host_id').onDelete('cascade'))
        .addColumn('t', 'bigint', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('detail', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
    },
    async down() {
      throw new Error('the initial schema is not reversible: restore from a backup instead');
    },
  };
}
