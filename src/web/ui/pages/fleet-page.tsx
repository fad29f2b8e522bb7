import { type FleetHost, useApi } from '../api.js';
import { Await, Empty, Link, Section, Sparkline, SqlPanel, StatusBadge, Time } from '../components.js';
import { duration } from '../format.js';

/** Every host: status, last batch, lag, activity, and what needs a look (gaps, refusals, alerts). */
export function FleetPage() {
  const loaded = useApi<FleetHost[]>('/api/fleet');
  return (
    <Await loaded={loaded} what="the fleet">
      {(hosts, { sql }) => (
        <>
          <Section
            title={`Fleet — ${hosts.length} ${hosts.length === 1 ? 'host' : 'hosts'}`}
            aside={<Summary hosts={hosts} />}
          >
            {hosts.length === 0 ? (
              <Empty>
                No host has enrolled yet. Create a token with <code>pofr server token --approve</code> and
                enroll a client with <code>pofr client enroll</code>.
              </Empty>
            ) : (
              <table class="grid fleet">
                <thead>
                  <tr>
                    <th>Host</th>
                    <th>Status</th>
                    <th>Last batch</th>
                    <th class="num">Lag</th>
                    <th>Records, last day of record</th>
                    <th class="num">Batches</th>
                    <th class="num">Gaps</th>
                    <th class="num">Refused</th>
                    <th class="num">Alerts</th>
                    <th>System</th>
                  </tr>
                </thead>
                <tbody>
                  {hosts.map((h) => (
                    <tr key={h.host_id} data-host={h.name}>
                      <td>
                        <Link href={`/host/${encodeURIComponent(h.host_id)}`} class="host-link">
                          {h.name}
                        </Link>
                        <div class="muted small mono">{h.host_id}</div>
                      </td>
                      <td>
                        <StatusBadge status={h.recording} />
                      </td>
                      <td>
                        <Time us={h.last_batch_at} zone={h.timezone} />
                      </td>
                      <td class="num">{duration(h.lag)}</td>
                      <td>
                        <Sparkline values={h.activity} label={`${h.name} activity`} />
                      </td>
                      <td class="num">{h.batches.toLocaleString('en')}</td>
                      <td class={`num ${h.gaps > 0 ? 'flag' : ''}`}>{h.gaps}</td>
                      <td class={`num ${h.refused > 0 ? 'flag' : ''}`}>{h.refused}</td>
                      <td class={`num ${h.alerts > 0 ? 'flag' : ''}`}>{h.alerts}</td>
                      <td class="small">
                        {h.os ?? '—'}
                        <div class="muted">
                          {h.kernel ?? ''} · {h.timezone ?? 'zone unknown'}
                        </div>
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

function Summary(props: { hosts: readonly FleetHost[] }) {
  const by = (s: string) => props.hosts.filter((h) => h.recording === s).length;
  return (
    <p class="muted small">
      {by('recording')} recording · {by('late')} late · {by('silent')} silent · {by('revoked')} revoked ·{' '}
      {props.hosts.reduce((n, h) => n + h.gaps, 0)} gaps
    </p>
  );
}
