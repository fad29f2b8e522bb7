import { useEffect, useState } from 'preact/hooks';

export type {
  ActivitySeries,
  AlertRow,
  AuditRow,
  DiffSet,
  EndpointRow,
  FileRow,
  FleetHost,
  HostRow,
  NetworkSummary,
  ProcessDetail,
  ProcessRow,
  SearchHit,
  StateDiff,
  TimelineEvent,
  TreeRow,
} from '../../query/index.js';
export type { DiffParams, SearchParams, TimelineParams } from '../api-schemas.js';

/** What every API answer carries beside its data. */
export interface Answer<T> {
  readonly data: T;
  readonly sql: readonly string[];
  readonly next?: string | null;
  readonly at?: number;
  readonly now?: number;
}

export type Loaded<T> =
  | { readonly state: 'loading' }
  | { readonly state: 'error'; readonly message: string; readonly status: number }
  | { readonly state: 'ok'; readonly answer: Answer<T> };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function getJson<T>(url: string, signal?: AbortSignal): Promise<Answer<T>> {
  const res = await fetch(url, { signal, headers: { accept: 'application/json' } });
  const body = (await res.json().catch(() => null)) as (Answer<T> & { message?: string }) | null;
  if (!res.ok || body === null)
    throw new ApiError(res.status, body?.message ?? `${res.status} ${res.statusText}`);
  return body;
}

/** Fetches `url` (null: nothing to fetch) and re-fetches when it changes; stale answers are dropped. */
export function useApi<T>(url: string | null): Loaded<T> & { retry(): void } {
  const [state, setState] = useState<Loaded<T>>({ state: 'loading' });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    if (url === null) return;
    const ctl = new AbortController();
    setState({ state: 'loading' });
    getJson<T>(url, ctl.signal).then(
      (answer) => setState({ state: 'ok', answer }),
      (e: unknown) => {
        if (ctl.signal.aborted) return;
        setState({
          state: 'error',
          message: (e as Error).message,
          status: e instanceof ApiError ? e.status : 0,
        });
      },
    );
    return () => ctl.abort();
  }, [url, attempt]);
  return { ...state, retry: () => setAttempt((n) => n + 1) };
}

/** A query string from the values that are set. */
export function qs(params: Record<string, string | number | boolean | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s === '' ? '' : `?${s}`;
}
