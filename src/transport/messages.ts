import { z } from 'zod';

/**
 * The JSON messages of the SSH channels (docs/protocol.md). Both ends validate what they receive
 * and what they send, so a bug on either side shows up as a clear error at the boundary.
 */

/** The `exec` commands the server accepts; everything else on an SSH session is refused. */
export const ENROLL_COMMAND = 'pofr-enroll';
export const INGEST_COMMAND = 'pofr-ingest';
/** The SSH user name of an enrollment connection; any other user name is a host id. */
export const ENROLL_USER = 'enroll';

/**
 * Environment requests a client sends on its session before `exec`: the protocol it speaks and its
 * pofr version. Optional (a client without them speaks protocol 1), and ignored by servers that
 * do not read them, so adding them broke no one; a server refuses a protocol it does not speak.
 */
export const PROTOCOL_ENV = 'POFR_PROTOCOL';
export const CLIENT_VERSION_ENV = 'POFR_CLIENT_VERSION';

/** What a client announces about itself at connection. */
export interface ClientAnnounce {
  /** pofr's version on the client, e.g. "0.1.0"; null when the client did not say. */
  readonly clientVersion: string | null;
}

const text = (max: number) => z.string().max(max);

export const enrollRequestSchema = z
  .object({
    method: z.enum(['token', 'password']),
    token: text(1024).optional(),
    password: text(1024).optional(),
    name: text(256).min(1),
    /** SPKI PEM of the client's ed25519 batch-signing key. */
    signing_key: text(4096).min(1),
    facts: z
      .object({
        hostname: text(256),
        machine_id: text(256),
        os: text(1024),
        kernel: text(1024),
      })
      .strict(),
  })
  .strict()
  .refine((r) => (r.method === 'token' ? r.token !== undefined : r.password !== undefined), {
    message: 'method "token" needs token, method "password" needs password',
  });

export type EnrollRequest = z.infer<typeof enrollRequestSchema>;

export const enrollReplySchema = z.discriminatedUnion('ok', [
  z
    .object({
      ok: z.literal(true),
      host_id: text(64).min(1),
      name: text(256),
      status: z.enum(['approved', 'pending']),
    })
    .strict(),
  z.object({ ok: z.literal(false), code: text(64).min(1), message: text(4096) }).strict(),
]);

export type EnrollReply = z.infer<typeof enrollReplySchema>;

/** The server's answer to one batch on the ingest channel, sent only after the batch is stored. */
export const batchAckSchema = z
  .object({
    seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable(),
    status: z.enum(['accepted', 'duplicate', 'refused']),
    code: text(64).optional(),
    reason: text(4096).optional(),
  })
  .strict();

export type BatchAck = z.infer<typeof batchAckSchema>;

/** Parses one JSON frame against a schema; the error names what was wrong, never the whole input. */
export function parseMessage<T>(schema: z.ZodType<T>, frame: Buffer, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(frame.toString('utf8'));
  } catch (e) {
    throw new Error(`${what} is not JSON: ${(e as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new Error(`${what} is invalid: ${issues}`);
  }
  return parsed.data;
}
