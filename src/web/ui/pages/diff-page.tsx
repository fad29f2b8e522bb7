import { type DiffSet, qs, type StateDiff, useApi } from '../api.js';
import { Await, Empty, Section, SqlPanel } from '../components.js';
import { setParams } from '../router.js';

/** Two instants of a host, or two hosts: what was added and removed, by kind. */
export function DiffPage(props: { params: URLSearchParams }) {
  const p = props.params;
  const ready = p.get('a') && p.get('at_a') && p.get('at_b');
  const url = ready
    ? `/api/diff${qs({ a: p.get('a'), at_a: p.get('at_a'), b: p.get('b') ?? undefined, at_b: p.get('at_b') })}`
    : null;
  const loaded = useApi<StateDiff>(url);
  return (
    <>
      <header class="page-head">
        <h1>Diff</h1>
        <form
          class="inline"
          onSubmit={(e) => {
            e.preventDefault();
            const f = new FormData(e.currentTarget as HTMLFormElement);
            setParams(
              Object.fromEntries(['a', 'at_a', 'b', 'at_b'].map((k) => [k, String(f.get(k) ?? '') || null])),
            );
          }}
        >
          <input name="a" placeholder="host A" defaultValue={p.get('a') ?? ''} aria-label="host A" />
          <input
            name="at_a"
            placeholder="instant A (2026-11-24T20:15:00Z)"
            defaultValue={p.get('at_a') ?? ''}
            aria-label="instant A"
          />
          <input
            name="b"
            placeholder="host B (empty: host A)"
            defaultValue={p.get('b') ?? ''}
            aria-label="host B"
          />
          <input
            name="at_b"
            placeholder="instant B"
            defaultValue={p.get('at_b') ?? ''}
            aria-label="instant B"
          />
          <button type="submit">Compare</button>
        </form>
      </header>
      {url === null ? (
        <Empty>
          Name a host and two instants (or two hosts) to see the processes, listeners, outbound connections
          and files that differ.
        </Empty>
      ) : (
        <Await loaded={loaded} what="the diff">
          {(d, { sql }) => (
            <>
              <div class="cols">
                <Changes title="Processes" set={d.processes} />
                <Changes title="Listeners" set={d.listeners} />
                <Changes title="Outbound connections" set={d.outbound} />
                <Changes title="Open files" set={d.files} />
              </div>
              <SqlPanel sql={sql} />
            </>
          )}
        </Await>
      )}
    </>
  );
}

function Changes(props: { title: string; set: DiffSet }) {
  const { added, removed, same } = props.set;
  return (
    <Section
      title={`${props.title}: +${added.length} −${removed.length}`}
      aside={<span class="muted small">{same} in both</span>}
    >
      {added.length + removed.length === 0 ? (
        <Empty>No difference.</Empty>
      ) : (
        <ul class="diff">
          {added.map((k) => (
            <li key={`+${k}`} class="added">
              + {k}
            </li>
          ))}
          {removed.map((k) => (
            <li key={`-${k}`} class="removed">
              − {k}
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}
