import { render } from 'preact';
import { Link } from './components.js';
import { DiffPage } from './pages/diff-page.js';
import { FleetPage } from './pages/fleet-page.js';
import { HostPage } from './pages/host-page.js';
import { NetworkPage } from './pages/network-page.js';
import { ProcessPage } from './pages/process-page.js';
import { AlertsPage, AuditPage } from './pages/records-pages.js';
import { SearchPage } from './pages/search-page.js';
import { useRoute } from './router.js';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const NAV = [
  ['/', 'Fleet'],
  ['/network', 'Network'],
  ['/search', 'Search'],
  ['/diff', 'Diff'],
  ['/alerts', 'Alerts'],
  ['/audit', 'Audit'],
] as const;

function App() {
  const route = useRoute();
  const { path, params } = route;
  let page = <FleetPage />;
  let section = '/';
  const host = /^\/host\/([^/]+)$/.exec(path);
  const proc = /^\/process\/(\d+)$/.exec(path);
  if (host) {
    page = <HostPage host={decodeURIComponent(host[1])} params={params} />;
  } else if (proc) {
    page = <ProcessPage id={Number(proc[1])} />;
  } else if (path === '/network') {
    page = <NetworkPage params={params} />;
    section = path;
  } else if (path === '/search') {
    page = <SearchPage params={params} />;
    section = path;
  } else if (path === '/diff') {
    page = <DiffPage params={params} />;
    section = path;
  } else if (path === '/alerts') {
    page = <AlertsPage />;
    section = path;
  } else if (path === '/audit') {
    page = <AuditPage />;
    section = path;
  }
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          pofr
        </Link>
        <nav aria-label="views">
          {NAV.map(([href, label]) => (
            <Link key={href} href={href} class={section === href ? 'active' : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <span class="muted small">read-only · times in UTC, the host's zone on hover</span>
      </header>
      <main>{page}</main>
      <footer class="foot muted small">
        pofr · read-only ·{' '}
        <a href="https://db-ip.com" rel="noreferrer">
          IP Geolocation by DB-IP
        </a>{' '}
        (country and ASN, CC BY 4.0) · <a href="/api/openapi.json">API (OpenAPI)</a>
      </footer>
    </>
  );
}

const root = document.getElementById('app')!;
// The page's "Loading pofr…" placeholder goes: Preact would otherwise render beside it.
root.textContent = '';
render(<App />, root);
