import type { FastifyInstance } from 'fastify';
import { PofrError } from '../../errors.js';
import { verifyBatch } from '../../ingest/index.js';
import { activitySeries, cursorOf, execSequences, listHosts, timeline, treeAt } from '../../query/index.js';
import {
  activityQuery,
  batchParams,
  hostParams,
  jsonSchema,
  type TimelineParams,
  timelineQuery,
  treeQuery,
} from '../api-schemas.js';
import { decodeCursor, encodeCursor, oneHost, parseFlag, parseInstant } from '../request-values.js';
import { captureSql } from '../sql-capture.js';

const PAGE = 500;
const MAX_PAGE = 10_000;

/** One host: its facts, its timeline page by page, its activity with gaps, its tree at an instant. */
export async function hostRoutes(app: FastifyInstance): Promise<void> {
  const params = jsonSchema(hostParams);

  app.get<{ Params: { host: string } }>(
    '/hosts/:host',
    { schema: { tags: ['host'], summary: 'one host', params } },
    async (req) => {
      const { result, sql } = await captureSql(app.store, async (s) => {
        const id = await oneHost(s, req.params.host);
        return (await listHosts(s)).find((h) => h.host_id === id)!;
      });
      return { data: result, sql };
    },
  );

  app.get<{ Params: { host: string }; Querystring: TimelineParams }>(
    '/hosts/:host/timeline',
    {
      schema: {
        tags: ['host'],
        summary: 'the host’s events in exact order, one page at a time (pass `next` as `after`)',
        params,
        querystring: jsonSchema(timelineQuery),
      },
    },
    async (req) => {
      const q = req.query;
      const limit = Math.min(MAX_PAGE, q.limit ? Number(q.limit) : PAGE);
      const { result, sql } = await captureSql(app.store, async (s) =>
        timeline(s, {
          hosts: [await oneHost(s, req.params.host)],
          from: parseInstant(q.from),
          to: parseInstant(q.to),
          observer: parseFlag(q.observer),
          kinds: q.kinds?.split(',').filter((k) => k !== ''),
          user: q.user || undefined,
          command: q.command || undefined,
          path: q.path || undefined,
          remote: q.remote || undefined,
          port: q.port ? Number(q.port) : undefined,
          country: q.country || undefined,
          pid: q.pid ? Number(q.pid) : undefined,
          after: decodeCursor(q.after),
          limit,
        }),
      );
      const last = result.at(-1);
      return {
        data: result,
        sql,
        next: result.length === limit && last ? encodeCursor(cursorOf(last)) : null,
      };
    },
  );

  app.get<{ Params: { host: string }; Querystring: { from?: string; to?: string; buckets?: string } }>(
    '/hosts/:host/activity',
    {
      schema: {
        tags: ['host'],
        summary: 'records per time bucket, and every gap in the range',
        params,
        querystring: jsonSchema(activityQuery),
      },
    },
    async (req) => {
      const { result, sql } = await captureSql(app.store, async (s) => {
        const id = await oneHost(s, req.params.host);
        const host = (await listHosts(s)).find((h) => h.host_id === id)!;
        const to = parseInstant(req.query.to) ?? host.last_seen ?? Date.now() * 1000;
        const from = parseInstant(req.query.from) ?? host.first_seen ?? to - 86_400_000_000;
        if (from > to) throw new PofrError('POFR_USAGE', 'from is after to');
        return activitySeries(s, id, {
          from,
          to,
          buckets: req.query.buckets ? Number(req.query.buckets) : undefined,
        });
      });
      return { data: result, sql };
    },
  );

  app.get<{ Params: { host: string }; Querystring: { at?: string; observer?: string } }>(
    '/hosts/:host/tree',
    {
      schema: {
        tags: ['host'],
        summary: 'the process tree alive at an instant',
        params,
        querystring: jsonSchema(treeQuery),
      },
    },
    async (req) => {
      const { result, sql } = await captureSql(app.store, async (s) => {
        const id = await oneHost(s, req.params.host);
        const at = parseInstant(req.query.at) ?? Date.now() * 1000;
        const rows = await treeAt(s, {
          hosts: [id],
          at,
          observer: parseFlag(req.query.observer),
          limit: 20_000,
        });
        const execs = await execSequences(s, rows);
        return { at, rows: rows.map((r) => ({ ...r, execs: execs.get(r.id) ?? null })) };
      });
      return { data: result.rows, at: result.at, sql };
    },
  );

  app.get<{ Params: { host: string; seq: string } }>(
    '/hosts/:host/batches/:seq',
    {
      schema: {
        tags: ['host'],
        summary: 'one stored batch, re-verified now',
        params: jsonSchema(batchParams),
      },
    },
    async (req, reply) => {
      const { result, sql } = await captureSql(app.store, async (s) => {
        const id = await oneHost(s, req.params.host);
        const batch = await s.db
          .selectFrom('batches')
          .selectAll()
          .where('host_id', '=', id)
          .where('seq', '=', Number(req.params.seq))
          .executeTakeFirst();
        return batch ? { batch, verdict: await verifyBatch(s, id, Number(req.params.seq)) } : null;
      });
      if (result === null)
        return reply
          .code(404)
          .send({ error: 'not_found', message: `no batch ${req.params.seq} of ${req.params.host}` });
      return { data: result, sql };
    },
  );
}
