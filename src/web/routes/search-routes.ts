import type { FastifyInstance } from 'fastify';
import { resolveHosts, search, stateDiff } from '../../query/index.js';
import { type DiffParams, diffQuery, jsonSchema, type SearchParams, searchQuery } from '../api-schemas.js';
import { oneHost, parseInstant } from '../request-values.js';
import { captureSql } from '../sql-capture.js';

/** Search across hosts (and its reverse pivots), and the diff of two instants or two hosts. */
export async function searchRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Querystring: SearchParams }>(
    '/search',
    {
      schema: {
        tags: ['search'],
        summary: 'a command, path, IP, name or user across hosts, newest first',
        querystring: jsonSchema(searchQuery),
      },
    },
    async (req) => {
      const q = req.query;
      const { result, sql } = await captureSql(app.store, async (s) =>
        search(s, {
          kind: q.kind,
          term: q.term,
          hosts: q.host ? await resolveHosts(s, q.host) : undefined,
          limit: q.limit ? Number(q.limit) : undefined,
        }),
      );
      return { data: result, sql };
    },
  );
  app.get<{ Querystring: DiffParams }>(
    '/diff',
    {
      schema: {
        tags: ['search'],
        summary: 'what differs between host a at at_a and host b (default a) at at_b',
        querystring: jsonSchema(diffQuery),
      },
    },
    async (req) => {
      const q = req.query;
      const { result, sql } = await captureSql(app.store, async (s) => {
        const a = await oneHost(s, q.a);
        const b = q.b ? await oneHost(s, q.b) : a;
        return stateDiff(
          s,
          { host_id: a, at: parseInstant(q.at_a)! },
          { host_id: b, at: parseInstant(q.at_b)! },
        );
      });
      return { data: result, sql };
    },
  );
}
