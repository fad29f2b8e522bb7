import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { Loaded } from './api.js';
import { byteParts, inZone, utc, visible } from './format.js';
import { navigate } from './router.js';

/** An in-app link: plain <a href> (copy, open in a new tab), handled without a page load. */
export function Link(props: { href: string; children: ComponentChildren; class?: string; title?: string }) {
  const onClick = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.href);
    scrollTo(0, 0);
  };
  return (
    <a href={props.href} class={props.class} title={props.title} onClick={onClick}>
      {props.children}
    </a>
  );
}

/** UTC, with the host's own zone on hover. */
export function Time(props: { us: number | null | undefined; zone?: string | null }) {
  return (
    <time
      class="t"
      title={inZone(props.us, props.zone)}
      dateTime={props.us ? new Date(props.us / 1000).toISOString() : undefined}
    >
      {utc(props.us)}
    </time>
  );
}

/** Text that may carry bytes that were not UTF-8 (written \xNN by the store): those stand out. */
export function Bytes(props: { text: string | null | undefined }) {
  if (props.text === null || props.text === undefined) return <span class="muted">—</span>;
  return (
    <span class="bytes">
      {byteParts(visible(props.text)).map((p, i) =>
        p.byte ? (
          <mark key={i} class="byte" title="a byte that is not valid UTF-8">
            {p.text}
          </mark>
        ) : (
          p.text
        ),
      )}
    </span>
  );
}

export function Loading(props: { what: string }) {
  return (
    <div class="state loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      Loading {props.what}…
    </div>
  );
}

export function ErrorBox(props: { message: string; status?: number; retry?: () => void }) {
  return (
    <div class="state error" role="alert">
      <strong>{props.status === 404 ? 'Not found' : 'Could not load this view'}</strong>
      <p>{props.message}</p>
      {props.retry && (
        <button type="button" onClick={props.retry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <div class="state empty">{props.children}</div>;
}

/** Renders a loaded answer, or its loading and error states. */
export function Await<T>(props: {
  loaded: Loaded<T> & { retry(): void };
  what: string;
  children: (
    data: T,
    extra: { sql: readonly string[]; next?: string | null; at?: number },
  ) => ComponentChildren;
}) {
  const l = props.loaded;
  if (l.state === 'loading') return <Loading what={props.what} />;
  if (l.state === 'error') return <ErrorBox message={l.message} status={l.status} retry={l.retry} />;
  return <>{props.children(l.answer.data, l.answer)}</>;
}

/** The SQL behind a view, exactly as it ran, ready to paste into `pofr sql`. */
export function SqlPanel(props: { sql: readonly string[] }) {
  const [copied, setCopied] = useState(false);
  if (props.sql.length === 0) return null;
  const text = props.sql.join(';\n\n');
  return (
    <details class="sql">
      <summary>
        SQL behind this view ({props.sql.length} {props.sql.length === 1 ? 'statement' : 'statements'})
      </summary>
      <p class="muted">
        Each statement runs as it is with <code>pofr sql "…"</code> on this store.
      </p>
      <button
        type="button"
        onClick={() => {
          void navigator.clipboard?.writeText(text).then(() => setCopied(true));
        }}
      >
        {copied ? 'Copied' : 'Copy'}
      </button>
      {props.sql.map((s, i) => (
        <pre key={i}>{s}</pre>
      ))}
    </details>
  );
}

export function StatusBadge(props: { status: string }) {
  const label: Record<string, string> = {
    recording: 'recording',
    late: 'late',
    silent: 'silent',
    revoked: 'revoked',
    pending: 'pending approval',
    waiting: 'waiting for its first batch',
  };
  return <span class={`badge status-${props.status}`}>{label[props.status] ?? props.status}</span>;
}

/** A small line of counts: the fleet page's events per bucket. */
export function Sparkline(props: { values: readonly number[]; label: string }) {
  const w = 120;
  const h = 24;
  const max = Math.max(1, ...props.values);
  const step = props.values.length > 1 ? w / (props.values.length - 1) : w;
  const points = props.values.map(
    (v, i) => `${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`,
  );
  const total = props.values.reduce((a, b) => a + b, 0);
  return (
    <svg
      class="spark"
      width={w}
      height={h}
      viewBox={`0 0 ${w} ${h}`}
      role="img"
      aria-label={`${props.label}: ${total} records`}
    >
      <title>{`${total.toLocaleString('en')} records over the last day of the record (max ${max.toLocaleString('en')} per 30 min)`}</title>
      <polyline points={points.join(' ')} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}

export function Section(props: {
  title: string;
  children: ComponentChildren;
  id?: string;
  aside?: ComponentChildren;
}) {
  return (
    <section class="panel" id={props.id}>
      <header class="panel-head">
        <h2>{props.title}</h2>
        {props.aside}
      </header>
      {props.children}
    </section>
  );
}
