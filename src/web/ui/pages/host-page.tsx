import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { TIMELINE_KINDS } from '../../../query/timeline-kinds.js';
import { ActivityChart } from '../activity-chart.js';
import {
  type ActivitySeries,
  getJson,
  type HostRow,
  qs,
  type TimelineEvent,
  type TreeRow,
  useApi,
} from '../api.js';
import { Await, Bytes, Empty, ErrorBox, Link, Section, SqlPanel, Time } from '../components.js';
import { inZone, isoParam, utc } from '../format.js';
import { setParams } from '../router.js';
import { VirtualRows } from '../virtual-rows.js';

const KINDS = TIMELINE_KINDS;
const FILTERS = ['user', 'command', 'path', 'remote', 'port', 'country'] as const;
const PAGE = 500;
const MAX_ROWS = 200_000;
const ROW = 26;

function us(param: string | null): number | undefined {
  if (param === null || param === '') return undefined;
  if (/^\d+$/.test(param)) return Number(param);
  const m = /^(.*?)(?:\.(\d{1,6}))?Z$/.exec(param);
  const ms = m ? Date.parse(`${m[1]}Z`) : Number.NaN;
  return Number.isNaN(ms) ? undefined : ms * 1000 + Number((m?.[2] ?? '').padEnd(6, '0'));
}

/** One host: activity with its gaps, the timeline in exact order, the tree at any instant. */
export function HostPage(props: { host: string; params: URLSearchParams }) {
  const loaded = useApi<HostRow>(`/api/hosts/${encodeURIComponent(props.host)}`);
  return (
    <Await loaded={loaded} what="the host">
      {(host) => <HostView host={host} params={props.params} />}
    </Await>
  );
}

function HostView(props: { host: HostRow; params: URLSearchParams }) {
  const { host, params } = props;
  const recordFrom = host.first_seen ?? 0;
  const recordTo = host.last_seen ?? recordFrom;
  const from = us(params.get('from')) ?? recordFrom;
  const to = us(params.get('to')) ?? recordTo;
  const observer = params.get('observer') === 'true';
  const kinds = params.get('kinds');
  const at = us(params.get('at')) ?? Math.max(from, to - 1_000_000);
  const selected = params.get('process');
  const activity = useApi<ActivitySeries>(
    `/api/hosts/${encodeURIComponent(host.host_id)}/activity${qs({ from: recordFrom, to: recordTo, buckets: 240 })}`,
  );
  const timelineQuery = qs({
    from,
    to,
    observer: observer ? undefined : 'false',
    kinds: kinds ?? undefined,
    ...Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? undefined])),
  });
  return (
    <>
      <header class="page-head">
        <h1>
          {host.name} <span class={`badge status-${host.status}`}>{host.status}</span>
        </h1>
        <p class="muted small">
          {host.os ?? 'OS unknown'} · {host.kernel ?? ''} · zone {host.timezone ?? 'unknown'} · record from{' '}
          <Time us={host.first_seen} zone={host.timezone} /> to{' '}
          <Time us={host.last_seen} zone={host.timezone} /> ·{' '}
          <Link href={`/network?host=${encodeURIComponent(host.host_id)}`}>network</Link> ·{' '}
          <Link
            href={`/diff?a=${encodeURIComponent(host.host_id)}&at_a=${isoParam(Math.max(recordFrom, at - 86_400_000_000))}&at_b=${isoParam(at)}`}
          >
            diff with a day before
          </Link>
        </p>
      </header>
      <Section
        title="Activity"
        aside={
          <p class="muted small">
            Window <Time us={from} zone={host.timezone} /> – <Time us={to} zone={host.timezone} />{' '}
            {(params.get('from') || params.get('to')) && (
              <button type="button" class="link" onClick={() => setParams({ from: null, to: null })}>
                whole record
              </button>
            )}{' '}
            · drag across the chart to choose a window · <span class="gap-key">red</span>: gaps in the record
          </p>
        }
      >
        <Await loaded={activity} what="activity">
          {(series) => (
            <>
              <ActivityChart
                series={series}
                window={params.get('from') || params.get('to') ? { from, to } : null}
                onSelect={(a, b) => setParams({ from: isoParam(a), to: isoParam(b), at: isoParam(b) })}
              />
              {series.gaps.length > 0 && (
                <ul class="gaps">
                  {series.gaps.map((g) => (
                    <li key={`${g.seq}-${g.from}`}>
                      <button type="button" class="link" onClick={() => setParams({ at: isoParam(g.from) })}>
                        <Time us={g.from} zone={host.timezone} />
                      </button>{' '}
                      – <Time us={g.to} zone={host.timezone} /> <span class="badge gap">{g.kind}</span>{' '}
                      {g.detail}
                    </li>
                  ))}
                </ul>
              )}
            </>
          )}
        </Await>
      </Section>
      <Filters params={params} observer={observer} />
      <div class="split">
        <Timeline host={host} query={timelineQuery} onInstant={(t) => setParams({ at: isoParam(t) }, true)} />
        <Tree host={host} at={at} from={from} to={to} observer={observer} selected={selected} />
      </div>
    </>
  );
}

function Filters(props: { params: URLSearchParams; observer: boolean }) {
  const { params } = props;
  const chosen = new Set((params.get('kinds') ?? '').split(',').filter((k) => k !== ''));
  const [draft, setDraft] = useState<Record<string, string>>(() =>
    Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? ''])),
  );
  useEffect(
    () => setDraft(Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? '']))),
    [params.toString()],
  );
  const toggleKind = (k: string) => {
    const next = new Set(chosen);
    if (next.has(k)) next.delete(k);
    else next.add(k);
    setParams({ kinds: next.size === 0 || next.size === KINDS.length ? null : [...next].join(',') });
  };
  const placeholders: Record<string, string> = {
    user: 'user or uid',
    command: 'command (regex)',
    path: 'path glob, e.g. /etc/*',
    remote: 'remote address',
    port: 'port',
    country: 'country (DE)',
  };
  return (
    <form
      class="filters panel"
      aria-label="timeline filters"
      onSubmit={(e) => {
        e.preventDefault();
        setParams(draft);
      }}
    >
      <fieldset class="kinds">
        <legend>Kinds</legend>
        {KINDS.map((k) => (
          <label key={k} class={`kind kind-${k}`}>
            <input
              type="checkbox"
              checked={chosen.size === 0 || chosen.has(k)}
              onChange={() => toggleKind(k)}
            />{' '}
            {k.replace('_', ' ')}
          </label>
        ))}
      </fieldset>
      <div class="fields">
        {FILTERS.map((f) => (
          <input
            key={f}
            name={f}
            aria-label={placeholders[f]}
            placeholder={placeholders[f]}
            value={draft[f]}
            onInput={(e) => setDraft({ ...draft, [f]: (e.currentTarget as HTMLInputElement).value })}
          />
        ))}
        <label class="small">
          <input
            type="checkbox"
            checked={props.observer}
            onChange={() => setParams({ observer: props.observer ? null : 'true' })}
          />{' '}
          show pofr's own activity
        </label>
        <button type="submit">Filter</button>
        <button
          type="button"
          class="link"
          onClick={() => setParams(Object.fromEntries(FILTERS.map((f) => [f, null])))}
        >
          clear
        </button>
      </div>
    </form>
  );
}

interface Pages {
  rows: TimelineEvent[];
  next: string | null;
  loading: boolean;
  error: string | null;
  sql: readonly string[];
}

function Timeline(props: { host: HostRow; query: string; onInstant: (t: number) => void }) {
  const { host, query } = props;
  const [pages, setPages] = useState<Pages>({ rows: [], next: null, loading: true, error: null, sql: [] });
  const inflight = useRef<AbortController | null>(null);
  const base = `/api/hosts/${encodeURIComponent(host.host_id)}/timeline${query}${query ? '&' : '?'}limit=${PAGE}`;
  const load = (after: string | null, reset: boolean) => {
    inflight.current?.abort();
    const ctl = new AbortController();
    inflight.current = ctl;
    setPages(
      (p) => ({ ...(reset ? { rows: [], next: null, sql: [] } : p), loading: true, error: null }) as Pages,
    );
    getJson<TimelineEvent[]>(`${base}${after ? `&after=${after}` : ''}`, ctl.signal).then(
      (a) =>
        setPages((p) => ({
          rows: reset ? [...a.data] : [...p.rows, ...a.data],
          next: a.next ?? null,
          loading: false,
          error: null,
          sql: a.sql,
        })),
      (e: unknown) => {
        if (!ctl.signal.aborted) setPages((p) => ({ ...p, loading: false, error: (e as Error).message }));
      },
    );
  };
  useEffect(() => {
    load(null, true);
    return () => inflight.current?.abort();
  }, [base]);
  const more = () => {
    if (!pages.loading && pages.next && pages.rows.length < MAX_ROWS) load(pages.next, false);
  };
  const aside = (
    <p class="muted small" data-testid="timeline-count">
      {pages.rows.length.toLocaleString('en')} events{pages.next ? ' so far (scroll for more)' : ''}
      {pages.loading ? ' · loading…' : ''}
    </p>
  );
  return (
    <Section title="Timeline" aside={aside} id="timeline">
      {pages.error && <ErrorBox message={pages.error} retry={() => load(null, true)} />}
      {!pages.error && !pages.loading && pages.rows.length === 0 ? (
        <Empty>
          No event in this window matches these filters. Widen the window on the chart or clear the filters.
        </Empty>
      ) : (
        <VirtualRows
          rows={pages.rows}
          rowHeight={ROW}
          height={Math.max(320, Math.min(640, innerHeight - 260))}
          resetKey={base}
          onNearEnd={more}
          render={(e) => <EventRow e={e} zone={host.timezone} onInstant={props.onInstant} />}
        />
      )}
      <SqlPanel sql={pages.sql} />
    </Section>
  );
}

function EventRow(props: { e: TimelineEvent; zone: string | null; onInstant: (t: number) => void }) {
  const { e } = props;
  const processId = 'process_id' in e ? e.process_id : null;
  return (
    <div class={`event kind-${e.kind}`} data-kind={e.kind}>
      <button
        type="button"
        class="link t"
        title={`${inZone(e.time, props.zone)} — show the tree at this instant`}
        onClick={() => props.onInstant(e.time)}
      >
        {utc(e.time)}
      </button>
      <span class="kind-tag">{e.kind.replace('_', ' ')}</span>
      <span class="pid num">{e.pid ?? ''}</span>
      <span class="summary">
        {processId !== null ? (
          <Link href={`/process/${processId}`}>
            <Bytes text={e.summary} />
          </Link>
        ) : (
          <Bytes text={e.summary} />
        )}
      </span>
    </div>
  );
}

type TreeEntry = TreeRow & { execs: string[] | null };

function Tree(props: {
  host: HostRow;
  at: number;
  from: number;
  to: number;
  observer: boolean;
  selected: string | null;
}) {
  const { host } = props;
  const [slider, setSlider] = useState(props.at);
  useEffect(() => setSlider(props.at), [props.at]);
  useEffect(() => {
    if (slider === props.at) return;
    const t = setTimeout(() => setParams({ at: isoParam(slider) }, true), 180);
    return () => clearTimeout(t);
  }, [slider]);
  const url = `/api/hosts/${encodeURIComponent(host.host_id)}/tree${qs({ at: props.at, observer: props.observer ? undefined : 'false' })}`;
  const tree = useApi<TreeEntry[]>(url);
  const lo = Math.min(props.from, props.at);
  const hi = Math.max(props.to, props.at);
  return (
    <Section title="Process tree at" id="tree" aside={<Time us={slider} zone={host.timezone} />}>
      <label class="slider">
        <span class="sr">instant of the tree</span>
        <input
          type="range"
          aria-label="instant of the tree"
          min={Math.floor(lo / 1e6)}
          max={Math.ceil(hi / 1e6)}
          step={1}
          value={Math.round(slider / 1e6)}
          onInput={(e) => setSlider(Number((e.currentTarget as HTMLInputElement).value) * 1e6)}
        />
      </label>
      <Await loaded={tree} what="the tree">
        {(rows, { sql }) => <TreeRows rows={rows} zone={host.timezone} selected={props.selected} sql={sql} />}
      </Await>
    </Section>
  );
}

function TreeRows(props: {
  rows: TreeEntry[];
  zone: string | null;
  selected: string | null;
  sql: readonly string[];
}) {
  const shown = useMemo(() => props.rows.slice(0, 5000), [props.rows]);
  const selectedRef = useRef<HTMLLIElement>(null);
  useEffect(() => selectedRef.current?.scrollIntoView({ block: 'center' }), [props.selected, props.rows]);
  if (props.rows.length === 0)
    return <Empty>Nothing of this host was alive on record at this instant.</Empty>;
  return (
    <>
      <p class="muted small" data-testid="tree-count">
        {props.rows.length} processes alive
      </p>
      <ul class="tree" data-testid="tree">
        {shown.map((p) => (
          <li
            key={p.id}
            ref={String(p.id) === props.selected ? selectedRef : undefined}
            class={String(p.id) === props.selected ? 'selected' : undefined}
            style={{ paddingLeft: `${p.depth * 16 + 4}px` }}
            data-pid={p.pid}
          >
            <span class="pid num">{p.pid}</span>{' '}
            {p.execs && p.execs.length > 1 && (
              <span class="execs" title="one pid's successive programs (exec), oldest first">
                {p.execs.join(' → ')}
              </span>
            )}{' '}
            <Link href={`/process/${p.id}`}>
              <Bytes text={p.cmdline || `[${p.comm}]`} />
            </Link>{' '}
            <span class="muted small">
              {p.user ?? p.ruid}
              {p.euid !== p.ruid && <span class="badge setuid"> euid {p.euid}</span>} · since{' '}
              <Time us={p.start} zone={props.zone} />
            </span>
          </li>
        ))}
      </ul>
      {props.rows.length > shown.length && <p class="muted small">first {shown.length} shown</p>}
      <SqlPanel sql={props.sql} />
    </>
  );
}
