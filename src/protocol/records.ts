import { z } from 'zod';

/**
 * The typed records a batch carries (protocol v1, see docs/protocol.md). Every record has `type`
 * and `t`, its time in integer microseconds since the Unix epoch, UTC. A process is identified on
 * its host by (boot_id, pid, start_ticks): boot_id travels in the batch envelope, start_ticks is
 * field 22 of /proc/PID/stat (clock ticks since boot), so a reused pid is a different process.
 */

// One format check each instead of int, min and max (z.int() is already a safe integer): every
// record has several, and validating records is a sixth of a batch's ingest.
const u32 = z.uint32();
const micros = z.int().min(0);
const MAX_ARGV = 65_536;

export const wireBytesSchema = z.union([
  z.string().max(1 << 20),
  z
    .object({
      b64: z
        .string()
        .max(1_400_000)
        .regex(/^[A-Za-z0-9+/]*={0,2}$/),
    })
    .strict(),
]);

/** Where a process record came from: exact kernel events or /proc sampling. */
export const sourceSchema = z.enum(['trace', 'sample']);

/**
 * Where an image's argv came from: `probe`, read by a uprobe at the program's first instruction
 * (exact, before the program could change it); `proc`, /proc/PID/cmdline (what the process shows
 * when it was read: a process can rewrite it); `event`, the kernel's exec event alone (the process
 * was gone before anything else could be read: argv is the executed path only).
 */
export const argvSourceSchema = z.enum(['probe', 'proc', 'event']);

export const procRefSchema = z.object({ pid: u32, start_ticks: micros }).strict();

/** One image of a process: what it was when started or after an exec. */
export const processImageSchema = z
  .object({
    pid: u32,
    start_ticks: micros,
    /** Wall-clock start, microseconds (derived from start_ticks and the boot time). */
    start: micros,
    ppid: u32,
    /** The parent's start_ticks when known, so the parent row is found even after pid reuse. */
    parent_start_ticks: micros.nullable(),
    exe: wireBytesSchema.nullable(),
    comm: wireBytesSchema,
    argv: z.array(wireBytesSchema).max(MAX_ARGV),
    cwd: wireBytesSchema.nullable(),
    ruid: u32,
    euid: u32,
    rgid: u32,
    egid: u32,
    source: sourceSchema,
    /** True for the recorder's own processes, so analysts can exclude them. */
    observer: z.boolean(),
    /** Absent in batches of recorders before exec tracing. */
    argv_source: argvSourceSchema.optional(),
    /** False when argv was cut (too long for the probe, unreadable) or stands in for a gone process. */
    argv_complete: z.boolean().optional(),
    /**
     * Where the process runs (read at first sight and at each exec; absent in batches of earlier
     * recorders, null when unreadable): its cgroup path, the container id that path names, and the
     * inode numbers of its pid, net, mnt and user namespaces (/proc/PID/ns/*).
     */
    cgroup: wireBytesSchema.nullable().optional(),
    container_id: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .nullable()
      .optional(),
    ns_pid: micros.nullable().optional(),
    ns_net: micros.nullable().optional(),
    ns_mnt: micros.nullable().optional(),
    ns_user: micros.nullable().optional(),
  })
  .strict();

export const fileKindSchema = z.enum(['file', 'dir', 'dev', 'socket', 'pipe', 'anon', 'other']);

export const fileInfoSchema = z
  .object({
    pid: u32,
    start_ticks: micros,
    fd: u32,
    path: wireBytesSchema,
    kind: fileKindSchema,
  })
  .strict();

export const endpointInfoSchema = z
  .object({
    /** Opaque, stable for the life of the endpoint, unique among the host's open endpoints. */
    key: z.string().min(1).max(256),
    pid: u32.nullable(),
    start_ticks: micros.nullable(),
    proto: z.enum(['tcp', 'udp']),
    family: z.union([z.literal(4), z.literal(6)]),
    local_ip: z.string().max(64),
    local_port: z.uint32().max(65535),
    remote_ip: z.string().max(64),
    remote_port: z.uint32().max(65535),
    /** TCP state name as the kernel calls it (ESTABLISHED, LISTEN, …); UDP: UNCONN or ESTABLISHED. */
    state: z.string().max(32),
    inode: micros,
    /**
     * The network namespace the socket lives in (the inode of /proc/PID/ns/net), so a container's
     * sockets are told from the host's; null when unknown. Absent in batches of earlier recorders.
     */
    netns: micros.nullable().optional(),
  })
  .strict();

export const userSchema = z
  .object({
    uid: u32,
    gid: u32,
    name: z.string().max(256),
    home: z.string().max(4096),
    shell: z.string().max(4096),
  })
  .strict();
export const groupSchema = z
  .object({ gid: u32, name: z.string().max(256), members: z.array(z.string().max(256)).max(65_536) })
  .strict();
export const interfaceSchema = z
  .object({
    name: z.string().max(64),
    mac: z.string().max(64).nullable(),
    addresses: z.array(z.string().max(64)).max(4096),
  })
  .strict();
export const routeSchema = z
  .object({
    family: z.union([z.literal(4), z.literal(6)]),
    destination: z.string().max(64),
    gateway: z.string().max(64),
    dev: z.string().max(64),
    metric: u32,
  })
  .strict();
export const deviceSchema = z
  .object({
    bus: z.string().max(32),
    id: z.string().max(256),
    vendor_id: z.string().max(16).nullable(),
    product_id: z.string().max(16).nullable(),
    name: z.string().max(512).nullable(),
    serial: z.string().max(256).nullable(),
  })
  .strict();

export const inventorySchema = z
  .object({
    hostname: z.string().max(256),
    os: z.string().max(512),
    kernel: z.string().max(512),
    arch: z.string().max(64),
    boot_time: micros,
    timezone: z.string().max(128),
    machine_id: z.string().max(128),
    users: z.array(userSchema).max(1_000_000),
    groups: z.array(groupSchema).max(1_000_000),
    interfaces: z.array(interfaceSchema).max(65_536),
    routes: z.array(routeSchema).max(1_000_000),
    devices: z.array(deviceSchema).max(65_536),
  })
  .strict();

/** (uid_t)-1, the kernel's "no id": the ids of a process whose credentials are not known. */
export const UNKNOWN_ID = 0xffff_ffff;

const at = { t: micros };
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** Which source runs in which mode, from the source's own health() (see recorder/source.ts). */
export const sourceModeSchema = z
  .object({ name: z.string().min(1).max(64), mode: z.string().max(32), limited: z.boolean() })
  .strict();

/** The recorder's effective settings, flat: what the configuration hash covers. */
export const recorderConfigSchema = z.record(
  z.string().max(64),
  z.union([z.string().max(4096), z.number(), z.boolean(), z.null(), z.array(z.string().max(256)).max(64)]),
);

/** A process's user and group ids (real and effective), before or after a change. */
export const credsSchema = z.object({ ruid: u32, euid: u32, rgid: u32, egid: u32 }).strict();

/**
 * The fields of an image a `process_exec_delta` carries only when the exec changed them (a
 * set-user-ID program changes the ids; a process reparented since its image changes ppid).
 */
const execChangeShape = {
  ppid: u32.optional(),
  parent_start_ticks: micros.nullable().optional(),
  cwd: wireBytesSchema.nullable().optional(),
  ruid: u32.optional(),
  euid: u32.optional(),
  rgid: u32.optional(),
  egid: u32.optional(),
  observer: z.boolean().optional(),
  cgroup: wireBytesSchema.nullable().optional(),
  container_id: processImageSchema.shape.container_id,
  ns_pid: micros.nullable().optional(),
  ns_net: micros.nullable().optional(),
  ns_mnt: micros.nullable().optional(),
  ns_user: micros.nullable().optional(),
};

/** The image fields a `process_exec_delta` names only when they changed. */
export const EXEC_CHANGE_FIELDS = Object.keys(execChangeShape) as readonly (keyof typeof execChangeShape)[];

export const recordSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('process_start'), ...at, proc: processImageSchema }).strict(),
  /** Same (pid, start_ticks), new program image. */
  z.object({ type: z.literal('process_exec'), ...at, proc: processImageSchema }).strict(),
  /**
   * Protocol 3: a process started at `t` as a copy of its parent's current image (a fork), named by
   * its identity alone; every other field of its image is its parent's, as the record stream has it.
   */
  z
    .object({
      type: z.literal('process_fork'),
      ...at,
      pid: u32,
      start_ticks: micros,
      ppid: u32,
      parent_start_ticks: micros,
      observer: z.boolean(),
    })
    .strict(),
  /**
   * Protocol 4: an exec of a process whose current image the record stream stated whole, naming
   * what the new image changed. The program's fields (exe, comm, argv and where argv came from) are
   * always there; every other field of the image is present only when it differs from the image
   * before the exec, which it otherwise keeps (start, ppid, cwd, ids, context). Its source is
   * `trace`.
   */
  z
    .object({
      type: z.literal('process_exec_delta'),
      ...at,
      pid: u32,
      start_ticks: micros,
      exe: wireBytesSchema.nullable(),
      comm: wireBytesSchema,
      argv: z.array(wireBytesSchema).max(MAX_ARGV),
      argv_source: argvSourceSchema,
      argv_complete: z.boolean(),
      ...execChangeShape,
    })
    .strict(),
  z.object({ type: z.literal('process_exit'), ...at, pid: u32, start_ticks: micros }).strict(),
  z.object({ type: z.literal('file_open'), ...at, file: fileInfoSchema }).strict(),
  z.object({ type: z.literal('file_close'), ...at, pid: u32, start_ticks: micros, fd: u32 }).strict(),
  z.object({ type: z.literal('endpoint_open'), ...at, endpoint: endpointInfoSchema }).strict(),
  z
    .object({
      type: z.literal('endpoint_state'),
      ...at,
      key: z.string().min(1).max(256),
      state: z.string().max(32),
    })
    .strict(),
  z.object({ type: z.literal('endpoint_close'), ...at, key: z.string().min(1).max(256) }).strict(),
  z.object({ type: z.literal('inventory'), ...at, inventory: inventorySchema }).strict(),
  /**
   * Full state at `t`. The server opens whatever it lacks and closes, at `t`, whatever it holds open
   * for this host and boot that the keyframe does not list: the record heals after any loss.
   */
  z
    .object({
      type: z.literal('keyframe'),
      ...at,
      processes: z.array(processImageSchema).max(1_000_000),
      files: z.array(fileInfoSchema).max(10_000_000),
      endpoints: z.array(endpointInfoSchema).max(1_000_000),
    })
    .strict(),
  /**
   * A process looked up a name (a glibc resolver function was called: `func` is `getaddrinfo`,
   * `gethostbyname`, …). The answer is not part of it.
   */
  z
    .object({
      type: z.literal('dns_query'),
      ...at,
      pid: u32,
      start_ticks: micros,
      func: z.string().min(1).max(64),
      name: wireBytesSchema,
    })
    .strict(),
  /** A process changed its user or group ids without an exec (`call`: setuid, setresuid, …). */
  z
    .object({
      type: z.literal('cred_change'),
      ...at,
      pid: u32,
      start_ticks: micros,
      call: z.string().min(1).max(32),
      old: credsSchema,
      new: credsSchema,
    })
    .strict(),
  /** The recorder knows it lost events between `from` and `to` (spool full, reader overrun, …). */
  z
    .object({
      type: z.literal('gap'),
      ...at,
      from: micros,
      to: micros,
      reason: z.string().max(4096),
      dropped: z.number().int().min(0).nullable(),
    })
    .strict(),
  /**
   * The recorder started: its version, pid, settings (`config`, hashed as `config_hash`), which
   * source runs in which mode, and how often it promises a heartbeat (so the server knows when it is
   * late).
   */
  z
    .object({
      type: z.literal('recorder_start'),
      ...at,
      version: z.string().max(64),
      pid: u32,
      config_hash: hex64,
      config: recorderConfigSchema,
      sources: z.array(sourceModeSchema).max(64),
      heartbeat_ms: z.number().int().min(1).max(0xffff_ffff),
      batch_ms: z.number().int().min(1).max(0xffff_ffff),
    })
    .strict(),
  /** The recorder stopped cleanly; `reason` is `signal` (with its name), `deregister` or `shutdown`. */
  z
    .object({
      type: z.literal('recorder_stop'),
      ...at,
      pid: u32,
      reason: z.string().max(256),
      signal: z.string().max(32).nullable(),
    })
    .strict(),
  /** The recorder is alive; the next one is due `heartbeat_ms` later. */
  z
    .object({
      type: z.literal('recorder_heartbeat'),
      ...at,
      pid: u32,
      uptime_ms: micros,
      config_hash: hex64,
      heartbeat_ms: z.number().int().min(1).max(0xffff_ffff),
      batch_ms: z.number().int().min(1).max(0xffff_ffff),
      spool_depth: micros,
      spool_bytes: micros,
      sources: z.array(sourceModeSchema).max(64),
    })
    .strict(),
  /**
   * The recorder came back (`t`) after it ended without a clean stop (SIGKILL, a crash, a power
   * loss). It was blind from `last_write` (its journal's last write) to `t`; what its journal held
   * was sealed into batches `recovered_seq_from`..`recovered_seq_to` before this record.
   */
  z
    .object({
      type: z.literal('recorder_crash'),
      ...at,
      pid: u32,
      last_write: micros.nullable(),
      crashed_pid: u32.nullable(),
      crashed_boot_id: z.string().max(64).nullable(),
      /** The host booted again in between: a power loss, a reset or a crash of the whole host. */
      rebooted: z.boolean(),
      recovered_records: micros,
      recovered_seq_from: micros.nullable(),
      recovered_seq_to: micros.nullable(),
      /** Records the journal could not keep (its bound, a full disk) and that died with the recorder. */
      journal_lost: micros.nullable(),
      /** Bytes at the journal's end that did not read back (a write cut short by a power loss). */
      torn_bytes: micros,
    })
    .strict(),
]);

export type ArgvSource = z.infer<typeof argvSourceSchema>;
export type ProcRef = z.infer<typeof procRefSchema>;
export type Creds = z.infer<typeof credsSchema>;
export type ProcessImage = z.infer<typeof processImageSchema>;
export type FileKind = z.infer<typeof fileKindSchema>;
export type FileInfo = z.infer<typeof fileInfoSchema>;
export type EndpointInfo = z.infer<typeof endpointInfoSchema>;
export type Inventory = z.infer<typeof inventorySchema>;
export type InventoryUser = z.infer<typeof userSchema>;
export type InventoryGroup = z.infer<typeof groupSchema>;
export type SourceMode = z.infer<typeof sourceModeSchema>;
export type RecorderConfig = z.infer<typeof recorderConfigSchema>;
export type PofrRecord = z.infer<typeof recordSchema>;
export type RecordType = PofrRecord['type'];
export type RecordOf<T extends RecordType> = Extract<PofrRecord, { type: T }>;
