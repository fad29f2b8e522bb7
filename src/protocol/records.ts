import { z } from 'zod';

/**
 * The typed records a batch carries (protocol v1, see docs/protocol.md). Every record has `type`
 * and `t`, its time in integer microseconds since the Unix epoch, UTC. A process is identified on
 * its host by (boot_id, pid, start_ticks): boot_id travels in the batch envelope, start_ticks is
 * field 22 of /proc/PID/stat (clock ticks since boot), so a reused pid is a different process.
 */

const u32 = z.number().int().min(0).max(0xffff_ffff);
const micros = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
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
    local_port: z.number().int().min(0).max(65535),
    remote_ip: z.string().max(64),
    remote_port: z.number().int().min(0).max(65535),
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

const at = { t: micros };

export const recordSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('process_start'), ...at, proc: processImageSchema }).strict(),
  /** Same (pid, start_ticks), new program image. */
  z.object({ type: z.literal('process_exec'), ...at, proc: processImageSchema }).strict(),
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
]);

export type ArgvSource = z.infer<typeof argvSourceSchema>;
export type ProcRef = z.infer<typeof procRefSchema>;
export type ProcessImage = z.infer<typeof processImageSchema>;
export type FileKind = z.infer<typeof fileKindSchema>;
export type FileInfo = z.infer<typeof fileInfoSchema>;
export type EndpointInfo = z.infer<typeof endpointInfoSchema>;
export type Inventory = z.infer<typeof inventorySchema>;
export type InventoryUser = z.infer<typeof userSchema>;
export type InventoryGroup = z.infer<typeof groupSchema>;
export type PofrRecord = z.infer<typeof recordSchema>;
export type RecordType = PofrRecord['type'];
export type RecordOf<T extends RecordType> = Extract<PofrRecord, { type: T }>;
