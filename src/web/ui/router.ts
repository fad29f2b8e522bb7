import { useEffect, useState } from 'preact/hooks';

/** The location the app shows; every view's state lives in its URL, so a link reopens the view. */
export interface Route {
  readonly path: string;
  readonly params: URLSearchParams;
}

function current(): Route {
  return { path: location.pathname, params: new URLSearchParams(location.search) };
}

export function navigate(url: string, replace = false): void {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  dispatchEvent(new PopStateEvent('popstate'));
}

/** Changes some query parameters of the current URL (null removes one), keeping the rest. */
export function setParams(changes: Record<string, string | null>, replace = false): void {
  const p = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === '') p.delete(k);
    else p.set(k, v);
  }
  const s = p.toString();
  navigate(`${location.pathname}${s ? `?${s}` : ''}`, replace);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const on = () => setRoute(current());
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return route;
}
