import { useState } from 'preact/hooks';
import { getJson, type ProcessDetail, type ProcessRow, useApi } from '../api.js';
import { Await, Bytes, Empty, Link, Section, SqlPanel, Time } from '../components.js';
import { exactArgs, isoParam } from '../format.js';

/** One process: its images in exec order, exact argv, ids, lineage, files, endpoints, proof. */
export function ProcessPage(props: { id: number }) {
  const loaded = useApi<ProcessDetail>(`/api/processes/${props.id}`);
  return (
    <Await loaded={loaded} what="the process">
      {(d, { sql }) => (
        <>
          <ProcessView d={d} />
          <SqlPanel sql={sql} />
        </>
      )}
    </Await>
  );
}

function ProcessView(props: { d: ProcessDetail }) {
  const { d } = props;
  const p = d.process;
  const treeLink = `/host/${encodeURIComponent(p.host_id)}?at=${isoParam(p.start)}&process=${p.id}`;
  return (
    <>
      <header class="page-head">
        <h1>
          <span class="muted">pid</span> {p.pid} <Bytes text={p.comm} />{' '}
          <span class="muted small">
            on <Link href={`/host/${encodeURIComponent(p.host_id)}`}>{p.host}</Link>
          </span>
        </h1>
        <ol class="exec-seq" aria-label="program images of this process, in exec order">
          {d.images.map((img, i) => (
            <li key={img.id} class={img.id === p.id ? 'current' : undefined}>
              {i > 0 && <span aria-hidden="true">→ </span>}
              <Link href={`/process/${img.id}`} title={`image ${img.exec_index}: ${img.exe ?? ''}`}>
                {img.comm}
              </Link>
              <span class="muted small"> exec #{img.exec_index}</span>
            </li>
          ))}
        </ol>
        <p>
          <Link href={treeLink}>Show in the tree at its start</Link>
        </p>
      </header>
      <div class="cols">
        <Section title="Program image">
          <Facts p={p} />
        </Section>
        <Section title="Lineage">
          {d.parents.length === 0 ? (
            <Empty>No parent on record (started before recording began, or the parent was not seen).</Empty>
          ) : (
            <ol class="lineage">
              {[...d.parents].reverse().map((a) => (
                <li key={a.id}>
                  <Link href={`/process/${a.id}`}>
                    {a.pid} <Bytes text={a.cmdline || a.comm} />
                  </Link>
                </li>
              ))}
              <li class="current">
                {p.pid} <Bytes text={p.cmdline || p.comm} />
              </li>
            </ol>
          )}
        </Section>
      </div>
      <Section title={`Children (${d.children.length})`}>
        {d.children.length === 0 ? (
          <Empty>No child process on record.</Empty>
        ) : (
          <table class="grid">
            <thead>
              <tr>
                <th class="num">PID</th>
                <th>Started</th>
                <th>User</th>
                <th>Command</th>
              </tr>
            </thead>
            <tbody>
              {d.children.map((c) => (
                <tr key={c.id}>
                  <td class="num">{c.pid}</td>
                  <td>
                    <Time us={c.start} />
                  </td>
                  <td>{c.user ?? c.ruid}</td>
                  <td>
                    <Link href={`/process/${c.id}`}>
                      <Bytes text={c.cmdline || c.comm} />
                    </Link>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title={`Files (${d.files.length})`}>
        {d.files.length === 0 ? (
          <Empty>No file descriptor on record for this process.</Empty>
        ) : (
          <table class="grid" data-testid="files">
            <thead>
              <tr>
                <th class="num">FD</th>
                <th>Kind</th>
                <th>Path</th>
                <th>First seen</th>
                <th>Last seen</th>
                <th>Batch</th>
              </tr>
            </thead>
            <tbody>
              {d.files.map((f) => (
                <tr key={f.id}>
                  <td class="num">{f.fd}</td>
                  <td>{f.kind}</td>
                  <td class="path">
                    <Bytes text={f.path} />
                    {f.path_raw_b64 && <span class="badge setuid">not UTF-8</span>}
                  </td>
                  <td>
                    <Time us={f.first_seen} />
                  </td>
                  <td>{f.open ? 'still open' : <Time us={f.last_seen} />}</td>
                  <td>
                    <BatchLink host={p.host_id} ord={f.open_ord} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title={`Network endpoints (${d.endpoints.length})`}>
        {d.endpoints.length === 0 ? (
          <Empty>No socket on record for this process.</Empty>
        ) : (
          <table class="grid" data-testid="endpoints">
            <thead>
              <tr>
                <th>Proto</th>
                <th>Local</th>
                <th>Remote</th>
                <th>Country</th>
                <th>Network</th>
                <th>Name</th>
                <th>State</th>
                <th>First seen</th>
                <th>Batch</th>
              </tr>
            </thead>
            <tbody>
              {d.endpoints.map((e) => (
                <tr key={e.id}>
                  <td>{e.proto}</td>
                  <td class="mono">
                    {e.local_ip}:{e.local_port}
                  </td>
                  <td class="mono">{e.remote_port === 0 ? '—' : `${e.remote_ip}:${e.remote_port}`}</td>
                  <td>{e.country ?? '—'}</td>
                  <td>
                    {e.fqdn ? (
                      <span title="reverse DNS of the remote address">{e.fqdn}</span>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                  <td>{e.state}</td>
                  <td>
                    <Time us={e.first_seen} />
                  </td>
                  <td>
                    <BatchLink host={p.host_id} ord={e.open_ord} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title="Batches that prove these facts">
        <ul class="batches">
          {d.batches.map((b) => (
            <li key={b.seq} id={`batch-${b.seq}`}>
              <Verify host={p.host_id} seq={b.seq} /> batch <strong>{b.seq}</strong>{' '}
              <span class={`badge chain-${b.chain}`}>{b.chain}</span>{' '}
              <span class="mono small">{b.hash.slice(0, 16)}…</span> · {b.record_count} records ·{' '}
              <Time us={b.t_from} /> – <Time us={b.t_to} /> · received <Time us={b.received_at} />
            </li>
          ))}
        </ul>
      </Section>
    </>
  );
}

function Facts(props: { p: ProcessRow }) {
  const { p } = props;
  const argv = p.argv_raw_b64 ? exactArgs(p.argv_raw_b64) : [...p.argv];
  const setuid = p.ruid !== p.euid || p.rgid !== p.egid;
  return (
    <dl class="facts">
      <dt>argv</dt>
      <dd>
        {argv.length === 0 ? (
          <span class="badge setuid">empty argv (argc 0)</span>
        ) : (
          <ol class="argv" data-testid="argv" start={0}>
            {argv.map((a, i) => (
              <li key={i}>
                <code>
                  <Bytes text={a} />
                </code>
              </li>
            ))}
          </ol>
        )}
        {p.argv_raw_b64 && <p class="muted small">Exact bytes: marked bytes are not valid UTF-8.</p>}
      </dd>
      <dt>exe</dt>
      <dd class="path">
        <Bytes text={p.exe} />
      </dd>
      <dt>cwd</dt>
      <dd class="path">
        <Bytes text={p.cwd} />
      </dd>
      <dt>ids</dt>
      <dd class={setuid ? 'setuid-change' : undefined}>
        uid {p.ruid} euid {p.euid} · gid {p.rgid} egid {p.egid} · user {p.user ?? 'unknown'}
        {setuid && <span class="badge setuid">setuid: effective ids differ from real ones</span>}
      </dd>
      <dt>lifetime</dt>
      <dd>
        <Time us={p.start} /> – {p.end === null ? 'running at the end of the record' : <Time us={p.end} />}
        {p.end_reason && <span class="muted"> ({p.end_reason})</span>}
      </dd>
      <dt>seen by</dt>
      <dd>
        {p.source === 'trace' ? 'kernel events (tracefs)' : '/proc sampling'}
        {p.observer && <span class="badge">pofr's own process</span>}
      </dd>
      <dt>proof</dt>
      <dd>
        <BatchLink host={p.host_id} ord={p.open_ord} />
      </dd>
    </dl>
  );
}

function BatchLink(props: { host: string; ord: number }) {
  const seq = Math.floor(props.ord / 1_000_000);
  return <a href={`#batch-${seq}`}>batch {seq}</a>;
}

/** Re-verifies one batch on demand: signature, payload hash, records, header against its row. */
function Verify(props: { host: string; seq: number }) {
  const [state, setState] = useState<{ ok: boolean; reason: string } | 'checking' | null>(null);
  if (state === null) {
    return (
      <button
        type="button"
        onClick={() => {
          setState('checking');
          getJson<{ verdict: { ok: boolean; reason: string } }>(
            `/api/hosts/${encodeURIComponent(props.host)}/batches/${props.seq}`,
          ).then(
            (a) => setState(a.data.verdict),
            (e: unknown) => setState({ ok: false, reason: (e as Error).message }),
          );
        }}
      >
        verify
      </button>
    );
  }
  if (state === 'checking') return <span class="badge">checking…</span>;
  return (
    <span class={`badge ${state.ok ? 'ok' : 'bad'}`} title={state.reason}>
      {state.ok ? 'verified' : 'FAILED'}
    </span>
  );
}
