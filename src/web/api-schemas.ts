import { z } from 'zod';

/**
 * The web API's parameters, defined once: Fastify validates requests with their JSON Schema (and
 * the OpenAPI document at /api/openapi.json is generated from them), the front end builds its
 * requests from the same types. Times are µs since the epoch UTC, or ISO 8601 (deep links carry
 * the readable form).
 */
const instant = z.union([z.string().regex(/^\d{1,16}$/), z.string().regex(/^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$/)]);
const bool = z.enum(['true', 'false']);
const limit = z.string().regex(/^\d{1,6}$/);

export const hostParams = z.object({ host: z.string().min(1).max(200) });
export const processParams = z.object({ id: z.string().regex(/^\d{1,16}$/) });
export const batchParams = hostParams.extend({ seq: z.string().regex(/^\d{1,16}$/) });

export const windowQuery = z.object({
  from: instant.optional(),
  to: instant.optional(),
  observer: bool.optional(),
  limit: limit.optional(),
});

export const timelineQuery = windowQuery.extend({
  /** Comma-separated kinds (process_start, file_open, …). */
  kinds: z.string().max(400).optional(),
  user: z.string().max(200).optional(),
  command: z.string().max(400).optional(),
  path: z.string().max(4096).optional(),
  remote: z.string().max(64).optional(),
  port: z
    .string()
    .regex(/^\d{1,5}$/)
    .optional(),
  country: z
    .string()
    .regex(/^[A-Za-z]{2}$/)
    .optional(),
  pid: z
    .string()
    .regex(/^\d{1,10}$/)
    .optional(),
  /** The `next` of the previous page. */
  after: z.string().max(600).optional(),
});

export const activityQuery = z.object({
  from: instant.optional(),
  to: instant.optional(),
  buckets: z
    .string()
    .regex(/^\d{1,4}$/)
    .optional(),
});

export const treeQuery = z.object({ at: instant.optional(), observer: bool.optional() });

export const networkQuery = windowQuery.extend({ host: z.string().max(200).optional() });

export const searchQuery = z.object({
  kind: z.enum(['command', 'path', 'ip', 'name', 'user']),
  term: z.string().min(1).max(4096),
  host: z.string().max(200).optional(),
  limit: limit.optional(),
});

export const diffQuery = z.object({
  a: z.string().min(1).max(200),
  at_a: instant,
  b: z.string().max(200).optional(),
  at_b: instant,
});

export const listQuery = z.object({ host: z.string().max(200).optional(), limit: limit.optional() });

export type TimelineParams = z.infer<typeof timelineQuery>;
export type SearchParams = z.infer<typeof searchQuery>;
export type DiffParams = z.infer<typeof diffQuery>;

/** The JSON Schema Fastify (and the OpenAPI document) take for a zod schema. */
export function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input' }) as Record<string, unknown>;
  return rest;
}

/** Every response: the answer, and the SQL that produced it (ready for `pofr sql`). */
export const envelope = {
  type: 'object',
  properties: {
    data: {},
    sql: { type: 'array', items: { type: 'string' } },
  },
  additionalProperties: true,
} as const;
