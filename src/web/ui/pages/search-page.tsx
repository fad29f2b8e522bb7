import { qs, type SearchHit, useApi } from '../api.js';
import { Await, Bytes, Empty, Link, Section, SqlPanel, Time } from '../components.js';
import { isoParam } from '../format.js';
import { setParams } from '../router.js';

const KINDS = [
  ['command', 'command', 'curl, /tmp/, python3 -c'],
  ['path', 'path (who opened it)', '/etc/shadow, /tmp/*'],
  ['ip', 'IP (who talked to it)', '45.142.212.61'],
  ['name', 'name (reverse DNS)', 'host.example.org'],
  ['user', 'user', 'www-data, 1000'],
] as const;

/** Across hosts; every hit opens the tree at that instant with its process selected. */
export function SearchPage(props: { params: URLSearchParams }) {
  const kind = props.params.get('kind') ?? 'command';
  const term = props.params.get('term') ?? '';
  const url =
    term === '' ? null : `/api/search${qs({ kind, term, host: props.params.get('host') ?? undefined })}`;
  const loaded = useApi<SearchHit[]>(url);
  return (
    <>
      <header class="page-head">
        <h1>Search</h1>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            const f = new FormData(e.currentTarget as HTMLFormElement);
            setParams({ kind: String(f.get('kind')), term: String(f.get('term') ?? '') });
          }}
        >
          <select name="kind" aria-label="what to search" value={kind}>
            {KINDS.map(([k, label]) => (
              <option key={k} value={k}>
                {label}
              </option>
            ))}
          </select>
          <input
            name="term"
            aria-label="search term"
            defaultValue={term}
            placeholder={KINDS.find(([k]) => k === kind)?.[2]}
            size={40}
          />
          <button type="submit">Search</button>
        </form>
      </header>
      {url === null ? (
        <Empty>
          Ask what POFR's manual asks: who ran <code>curl</code>, who opened <code>/etc/shadow</code>, who
          talked to an address — every result opens the process in the tree at that instant.
        </Empty>
      ) : (
        <Await loaded={loaded} what="matches">
          {(hits, { sql }) => (
            <>
              <Section
                title={`${hits.length} ${hits.length === 1 ? 'match' : 'matches'}${hits.length === 200 ? ' (the first 200)' : ''}`}
              >
                {hits.length === 0 ? (
                  <Empty>Nothing on record matches “{term}”.</Empty>
                ) : (
                  <table class="grid" data-testid="hits">
                    <thead>
                      <tr>
                        <th>When</th>
                        <th>Host</th>
                        <th>User</th>
                        <th>What</th>
                        <th />
                      </tr>
                    </thead>
                    <tbody>
                      {hits.map((h) => (
                        <tr key={`${h.what}-${h.row_id}`}>
                          <td>
                            <Time us={h.time} />
                          </td>
                          <td>{h.host}</td>
                          <td>{h.user ?? '—'}</td>
                          <td>
                            <Bytes text={h.summary} />
                          </td>
                          <td>
                            {h.process_id !== null && (
                              <Link
                                href={`/host/${encodeURIComponent(h.host_id)}?at=${isoParam(h.time)}&process=${h.process_id}`}
                              >
                                in the tree then
                              </Link>
                            )}
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
      )}
    </>
  );
}
