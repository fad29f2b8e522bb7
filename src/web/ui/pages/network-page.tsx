import { type EndpointRow, type NetworkSummary, qs, useApi } from '../api.js';
import { Await, Empty, Link, Section, SqlPanel, Time } from '../components.js';
import { isoParam } from '../format.js';
import { setParams } from '../router.js';

/** Endpoints by remote country, port and process: three bar charts, then the endpoints themselves. */
export function NetworkPage(props: { params: URLSearchParams }) {
  const host = props.params.get('host') ?? '';
  const url = `/api/network${qs({
    host: host || undefined,
    from: props.params.get('from') ?? undefined,
    to: props.params.get('to') ?? undefined,
    observer: 'false',
    limit: 1000,
  })}`;
  const loaded = useApi<{ summary: NetworkSummary; endpoints: EndpointRow[] }>(url);
  return (
    <>
      <header class="page-head">
        <h1>Network</h1>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            const f = new FormData(e.currentTarget as HTMLFormElement);
            setParams({ host: String(f.get('host') ?? '') || null });
          }}
        >
          <input
            name="host"
            placeholder="host name or id (empty: every host)"
            defaultValue={host}
            aria-label="host"
          />
          <button type="submit">Show</button>
        </form>
      </header>
      <Await loaded={loaded} what="endpoints">
        {({ summary, endpoints }, { sql }) => (
          <>
            <div class="cols three">
              <Bars title="By remote country" rows={summary.byCountry} />
              <Bars title="By port" rows={summary.byPort} />
              <Bars title="By process" rows={summary.byProcess} />
            </div>
            <Section
              title={`Endpoints (${endpoints.length}${endpoints.length === 1000 ? ', the first 1000' : ''})`}
            >
              {endpoints.length === 0 ? (
                <Empty>No endpoint on record here.</Empty>
              ) : (
                <table class="grid" data-testid="endpoints">
                  <thead>
                    <tr>
                      <th>Host</th>
                      <th>Process</th>
                      <th>Proto</th>
                      <th>Local</th>
                      <th>Remote</th>
                      <th>Country</th>
                      <th>Network</th>
                      <th>State</th>
                      <th>First seen</th>
                    </tr>
                  </thead>
                  <tbody>
                    {endpoints.map((e) => (
                      <tr key={e.id}>
                        <td>{e.host}</td>
                        <td>
                          {e.process_id === null ? (
                            '—'
                          ) : (
                            <Link
                              href={`/host/${encodeURIComponent(e.host_id)}?at=${isoParam(e.first_seen)}&process=${e.process_id}`}
                            >
                              {e.comm ?? e.pid}
                            </Link>
                          )}
                        </td>
                        <td>{e.proto}</td>
                        <td class="mono">
                          {e.local_ip}:{e.local_port}
                        </td>
                        <td class="mono">
                          {e.remote_port === 0 ? (
                            '—'
                          ) : (
                            <Link
                              href={`/search?kind=ip&term=${encodeURIComponent(e.remote_ip)}`}
                              title="who else talked to this address"
                            >
                              {e.remote_ip}:{e.remote_port}
                            </Link>
                          )}
                        </td>
                        <td title={e.geo_db ?? undefined}>{e.country ?? '—'}</td>
                        <td title={e.geo_db ?? undefined}>
                          {e.asn === null ? '—' : `AS${e.asn} ${e.as_org ?? ''}`}
                        </td>
                        <td>{e.state}</td>
                        <td>
                          <Time us={e.first_seen} />
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
    </>
  );
}

function Bars(props: {
  title: string;
  rows: readonly { key: string; endpoints: number; remotes: number }[];
}) {
  const max = Math.max(1, ...props.rows.map((r) => r.endpoints));
  return (
    <Section title={props.title}>
      {props.rows.length === 0 ? (
        <Empty>Nothing to count.</Empty>
      ) : (
        <ul class="bars">
          {props.rows.map((r) => (
            <li key={r.key} title={`${r.endpoints} endpoints, ${r.remotes} remote addresses`}>
              <span class="bar-label">{r.key}</span>
              <span class="bar" style={{ width: `${(r.endpoints / max) * 100}%` }} />
              <span class="num small">{r.endpoints.toLocaleString('en')}</span>
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}
