import { type AlertRow, type AuditRow, useApi } from '../api.js';
import { Await, Empty, Link, Section, SqlPanel, Time } from '../components.js';

/** Alerts as detection stored them (the detection issue fills the table). */
export function AlertsPage() {
  const loaded = useApi<AlertRow[]>('/api/alerts');
  return (
    <Await loaded={loaded} what="alerts">
      {(rows, { sql }) => (
        <>
          <Section title={`Alerts (${rows.length})`}>
            {rows.length === 0 ? (
              <Empty>No alert on record. Alerts appear here when detection rules raise them at ingest.</Empty>
            ) : (
              <table class="grid">
                <thead>
                  <tr>
                    <th>When</th>
                    <th>Host</th>
                    <th>Severity</th>
                    <th>Rule</th>
                    <th>Summary</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((a) => (
                    <tr key={a.id}>
                      <td>
                        <Time us={a.t} />
                      </td>
                      <td>
                        <Link href={`/host/${encodeURIComponent(a.host_id)}`}>{a.host}</Link>
                      </td>
                      <td>
                        <span class={`badge sev-${a.severity}`}>{a.severity}</span>
                      </td>
                      <td>{a.rule}</td>
                      <td>{a.summary}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Section>
          <SqlPanel sql={sql} />
        </>
      )}
    </Await>
  );
}

/** The audit trail: every refused attempt (keys, channels, frames, batches, caps), newest first. */
export function AuditPage() {
  const loaded = useApi<AuditRow[]>('/api/audit');
  return (
    <Await loaded={loaded} what="the audit">
      {(rows, { sql }) => (
        <>
          <Section title={`Refused (${rows.length})`}>
            {rows.length === 0 ? (
              <Empty>
                Nothing was refused: every connection, enrollment and batch on record was accepted.
              </Empty>
            ) : (
              <table class="grid">
                <thead>
                  <tr>
                    <th>When</th>
                    <th>Kind</th>
                    <th>Host</th>
                    <th>From</th>
                    <th>Key</th>
                    <th>Code</th>
                    <th>Reason</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((a, i) => (
                    <tr key={i}>
                      <td>
                        <Time us={a.time} />
                      </td>
                      <td>{a.kind}</td>
                      <td class="mono small">{a.host ?? '—'}</td>
                      <td>{a.remote ?? '—'}</td>
                      <td class="mono small">{a.fingerprint ?? '—'}</td>
                      <td>{a.code ?? '—'}</td>
                      <td>
                        {a.reason}
                        {a.suppressed > 0 ? ` (${a.suppressed} more not written)` : ''}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Section>
          <SqlPanel sql={sql} />
        </>
      )}
    </Await>
  );
}
