import type { FastifyInstance } from 'fastify';
import { fleetOverview, listAlerts, listAuditEvents, resolveHosts } from '../../query/index.js';
import { jsonSchema, listQuery } from '../api-schemas.js';
import { captureSql } from '../sql-capture.js';

/** The fleet page: every host with its status, activity and flags; alerts and audit beside it. */
export async function fleetRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/fleet',
    { schema: { tags: ['fleet'], summary: 'every host with status, lag, gaps, refusals, alerts, activity' } },
    async () => {
      const now = Date.now() * 1000;
      const { result, sql } = await captureSql(app.store, (s) => fleetOverview(s, { now }));
      return { data: result, sql, now };
    },
  );
  app.get<{ Querystring: { host?: string; limit?: string } }>(
    '/alerts',
    {
      schema: {
        tags: ['fleet'],
        summary: 'alerts raised by detection, newest first',
        querystring: jsonSchema(listQuery),
      },
    },
    async (req) => {
      const { result, sql } = await captureSql(app.store, async (s) =>
        listAlerts(s, {
          hosts: req.query.host ? await resolveHosts(s, req.query.host) : undefined,
          limit: req.query.limit ? Number(req.query.limit) : undefined,
        }),
      );
      return { data: result, sql };
    },
  );
  app.get<{ Querystring: { limit?: string } }>(
    '/audit',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'every refused attempt (the audit trail: keys, channels, frames, batches, caps), newest first',
        querystring: jsonSchema(listQuery),
      },
    },
    async (req) => {
      const { result, sql } = await captureSql(app.store, (s) =>
        listAuditEvents(s, {
          newestFirst: true,
          limit: req.query.limit ? Number(req.query.limit) : undefined,
        }),
      );
      return { data: result, sql };
    },
  );
}
