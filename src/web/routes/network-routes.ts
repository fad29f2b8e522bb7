import type { FastifyInstance } from 'fastify';
import { findEndpoints, networkSummary, resolveHosts } from '../../query/index.js';
import { jsonSchema, networkQuery } from '../api-schemas.js';
import { parseFlag, parseInstant } from '../request-values.js';
import { captureSql } from '../sql-capture.js';

/** The network page: endpoints by country, port and process, and the endpoints themselves. */
export async function networkRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Querystring: { host?: string; from?: string; to?: string; observer?: string; limit?: string } }>(
    '/network',
    {
      schema: {
        tags: ['network'],
        summary: 'endpoints by remote country, port and process, and a table of them',
        querystring: jsonSchema(networkQuery),
      },
    },
    async (req) => {
      const q = req.query;
      const { result, sql } = await captureSql(app.store, async (s) => {
        const w = {
          hosts: q.host ? await resolveHosts(s, q.host) : undefined,
          from: parseInstant(q.from),
          to: parseInstant(q.to),
          observer: parseFlag(q.observer),
        };
        return {
          summary: await networkSummary(s, w),
          endpoints: await findEndpoints(s, { ...w, limit: q.limit ? Number(q.limit) : 1000 }),
        };
      });
      return { data: result, sql };
    },
  );
}
