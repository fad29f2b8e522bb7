import { type CompiledRule, recordAlerts } from '../../detect/index.js';
import type { GeoLookup } from '../../enrich/index.js';
import { createBatchIngestor } from '../../ingest/index.js';
import type { Store } from '../../store/index.js';
import type { BatchAck, ServerHandlers } from '../../transport/index.js';
import { batchRefusalKind } from './audit-kinds.js';
import type { AuditTrail } from './audit-trail.js';
import { authorizeHostKey, enrollWithPassword, enrollWithToken, recordClientVersion } from './enrollment.js';

export type Log = (msg: string, fields?: object) => void;

export interface HandlerDeps {
  readonly store: Store;
  readonly audit: AuditTrail;
  readonly log: Log;
  readonly geo?: GeoLookup;
  /** Sigma rules evaluated on each batch, in its transaction (live alerts); none by default. */
  readonly rules?: readonly CompiledRule[];
  /** Pause after a refused enrollment, against guessing tokens and passwords; default 1 s. */
  readonly enrollRefusalDelayMs?: number;
}

/**
 * What the server does with each thing the transport hands it: the same for the embedded SSH
 * server and for the forced commands the site's sshd runs (OpenSSH mode). Every refusal reaches
 * the audit trail: the transport's through `refused`, enrollments' and batches' here.
 */
export function createServerHandlers(deps: HandlerDeps): ServerHandlers {
  const { store, audit, log, geo } = deps;
  const rules = deps.rules ?? [];
  // In the batch's transaction, so an alert exists exactly when its batch does (docs/detection.md).
  const onApplied =
    rules.length === 0
      ? undefined
      : async (trx: Parameters<typeof recordAlerts>[0], b: Parameters<typeof recordAlerts>[2]) => {
          await recordAlerts(trx, rules, b);
        };
  // The version each host's client last announced, so it is written once per change, not per batch.
  const knownVersions = new Map<string, string>();
  // Batches from every connection share COMMITs when they queue (SQLite): see commit-group.ts.
  const ingestor = createBatchIngestor(store);
  return {
    async authorize(username, key) {
      if (username === 'enroll') return { ok: true, principal: 'enroll' };
      const decision = await authorizeHostKey(store, username, key.fingerprint);
      if (!decision.ok)
        log('refused SSH key', { username, fingerprint: key.fingerprint, reason: decision.reason });
      return decision.ok ? { ok: true, principal: decision.hostId } : decision;
    },
    async enroll(req, ctx) {
      const common = {
        name: req.name,
        signingKey: req.signing_key,
        sealSeed: req.seal_seed,
        sealFrom: req.seal_from,
        sshKey: ctx.key.openssh,
        sshFingerprint: ctx.key.fingerprint,
        remote: ctx.remote,
        clientVersion: ctx.clientVersion,
      };
      const outcome =
        req.method === 'password'
          ? await enrollWithPassword(store, { ...common, password: req.password ?? '' })
          : await enrollWithToken(store, { ...common, token: req.token ?? '' });
      log(outcome.ok ? 'enrolled client' : 'refused enrollment', {
        remote: ctx.remote,
        name: req.name,
        method: req.method,
        ...outcome,
      });
      if (!outcome.ok) {
        audit.record({
          kind: 'enroll_refused',
          code: outcome.code,
          reason: `enrollment of ${JSON.stringify(req.name)} by ${req.method}: ${outcome.message}`,
          remote: ctx.remote,
          fingerprint: ctx.key.fingerprint,
          user: 'enroll',
        });
        // A refused guess costs the guesser a second on top of scrypt: passwords and tokens are not
        // worth brute-forcing through this channel.
        await new Promise((r) => setTimeout(r, deps.enrollRefusalDelayMs ?? 1000));
      }
      return outcome;
    },
    async ingest(principal, batch, ctx): Promise<BatchAck> {
      if (ctx.clientVersion !== null && knownVersions.get(principal) !== ctx.clientVersion) {
        await recordClientVersion(store, principal, ctx.clientVersion);
        knownVersions.set(principal, ctx.clientVersion);
      }
      // Throws only when the store itself failed: the transport then closes the channel without an
      // ACK and the client keeps the batch for a retry.
      const result = await ingestor.ingest(batch, { principal, geo, onApplied });
      if (result.status === 'refused') {
        log('refused batch', {
          remote: ctx.remote,
          host: principal,
          seq: result.seq,
          code: result.code,
          reason: result.reason,
        });
        audit.record({
          kind: batchRefusalKind(result.code),
          code: result.code,
          reason: result.seq === null ? result.reason : `batch ${result.seq}: ${result.reason}`,
          remote: ctx.remote,
          source: ctx.source,
          fingerprint: ctx.fingerprint,
          hostId: principal,
          user: ctx.user,
        });
        return { seq: result.seq, status: 'refused', code: result.code, reason: result.reason };
      }
      if (result.status === 'accepted' && result.chain !== 'ok' && result.chain !== 'genesis') {
        log('chain break recorded', { host: principal, seq: result.seq, chain: result.chain });
      }
      return { seq: result.seq, status: result.status };
    },
    refused(r) {
      audit.record({
        kind: r.kind,
        reason: r.reason,
        remote: r.remote,
        source: r.source,
        fingerprint: r.fingerprint,
        hostId: r.hostId,
        user: r.user,
        code: r.code,
      });
    },
  };
}
