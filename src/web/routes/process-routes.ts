import type { FastifyInstance } from 'fastify';
import { processDetail } from '../../query/index.js';
import { jsonSchema, processParams } from '../api-schemas.js';
import { captureSql } from '../sql-capture.js';

/** The process page: every image of the process, its parents, children, files, endpoints, batches. */
export async function processRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Params: { id: string } }>(
    '/processes/:id',
    {
      schema: {
        tags: ['process'],
        summary: 'one process with what it touched and the batches that prove it',
        params: jsonSchema(processParams),
      },
    },
    async (req, reply) => {
      const { result, sql } = await captureSql(app.store, (s) => processDetail(s, Number(req.params.id)));
      if (result === null)
        return reply.code(404).send({ error: 'not_found', message: `no process row ${req.params.id}` });
      return { data: result, sql };
    },
  );
}
