import './style.css';
import { ApiFailure, escapeHtml, getJson, path } from './api';
import { disposeCharts } from './charts';
import { navigate, parseRoute, type Route } from './router';
import { compareView } from './views/compare';
import { layerView } from './views/layer';
import { mapView } from './views/map';
import { neuronView } from './views/neuron';
import { overviewView } from './views/overview';
import { runsView } from './views/runs';
import type { View } from './views/view';

/**
 * The page: a header with breadcrumbs and the live indicator, one view drawn from the URL's path,
 * and a server-sent-events channel; on every store change the current view refetches its data and
 * redraws its charts in place (no reload). Failures show in place: 404 names what is unknown,
 * an unreachable store shows a banner and is retried every 2 s.
 */
const app = document.getElementById('app')!;
app.innerHTML = `
<header class="top">
  <a class="brand" href="/" data-link>Concept-Monitor</a>
  <nav class="crumbs" id="crumbs"></nav>
  <span class="spacer"></span>
  <span class="store" id="store"></span>
  <span class="live" id="live" title="live: the view updates when the store changes"><i></i>live</span>
</header>
<div class="banner" id="banner" hidden></div>
<main id="view"></main>`;
const viewRoot = document.getElementById('view')!;
const banner = document.getElementById('banner')!;
const crumbs = document.getElementById('crumbs')!;
const live = document.getElementById('live')!;

let current: View | undefined;
let route: Route = parseRoute(location.pathname);
let refreshing = false;
let pending = false;
/**
 * Which mount a refresh belongs to. A refresh still in flight when the user navigates (a live
 * change token's refetch, say) finishes against a view that is gone: its DOM lookups fail on the
 * new page. Its result, or its error, is dropped instead of replacing the new view with an error
 * page; the new view's own refresh runs right after it.
 */
let generation = 0;
let retryTimer: number | undefined;

function crumbsOf(r: Route): string {
  const link = (href: string, label: string): string =>
    `<a href="${href}" data-link>${escapeHtml(label)}</a>`;
  const items: string[] = [link('/', 'Runs')];
  if ('run' in r) items.push(link(path('runs', r.run), r.run));
  if ('layer' in r) items.push(link(path('runs', r.run, 'layers', r.layer), r.layer));
  if (r.view === 'map') items.push('<span>concept map</span>');
  if (r.view === 'neuron') items.push(`<span>neuron ${escapeHtml(r.neuron)}</span>`);
  if (r.view === 'compare') items.push(`<span>${escapeHtml(r.a)} vs ${escapeHtml(r.b)}</span>`);
  return items.join('<b>›</b>');
}

function showBanner(text: string | null): void {
  banner.hidden = text === null;
  banner.textContent = text ?? '';
}

function showProblem(e: unknown): void {
  if (e instanceof ApiFailure && e.status === 404) {
    disposeCharts();
    const m = e.body.missing;
    viewRoot.innerHTML = `<section class="error-page" data-status="404"><h1>Not found</h1>
      <p class="missing">${m ? `Unknown ${escapeHtml(m.kind)}: <code>${escapeHtml(m.value)}</code>` : escapeHtml(e.body.error)}</p>
      ${e.body.hint ? `<p class="hint">${escapeHtml(e.body.hint)}</p>` : ''}<p><a href="/" data-link>All runs</a></p></section>`;
    window.cm.ready = true;
    return;
  }
  if (e instanceof ApiFailure && (e.status === 503 || e.status === 0 || e.body.unavailable)) {
    showBanner(`The store cannot be reached: ${e.body.error}. Retrying every 2 s…`);
    window.clearTimeout(retryTimer);
    retryTimer = window.setTimeout(() => void refresh(), 2000);
    return;
  }
  viewRoot.innerHTML = `<section class="error-page"><h1>Error</h1><p>${escapeHtml(
    e instanceof Error ? e.message : String(e),
  )}</p></section>`;
  window.cm.errors.push(String(e));
}

async function refresh(): Promise<void> {
  if (!current) return;
  if (refreshing) {
    pending = true;
    return;
  }
  refreshing = true;
  const mounted = generation;
  try {
    await current.refresh();
    if (mounted === generation) {
      showBanner(null);
      window.cm.draws++;
      window.cm.ready = true;
    }
  } catch (e) {
    if (mounted === generation) showProblem(e);
  } finally {
    refreshing = false;
  }
  if (pending || mounted !== generation) {
    pending = false;
    await refresh();
  }
}

function mount(): void {
  current?.dispose?.();
  disposeCharts();
  route = parseRoute(location.pathname);
  generation++;
  window.cm.ready = false;
  window.cm.draws = 0;
  window.cm.view = route.view;
  crumbs.innerHTML = crumbsOf(route);
  viewRoot.innerHTML = '';
  viewRoot.className = `view-${route.view}`;
  switch (route.view) {
    case 'runs':
      current = runsView(viewRoot);
      break;
    case 'overview':
      current = overviewView(viewRoot, route.run);
      break;
    case 'layer':
      current = layerView(viewRoot, route.run, route.layer);
      break;
    case 'map':
      current = mapView(viewRoot, route.run, route.layer);
      break;
    case 'neuron':
      current = neuronView(viewRoot, route.run, route.layer, route.neuron);
      break;
    case 'compare':
      current = compareView(viewRoot, route.a, route.b);
      break;
    default:
      current = undefined;
      showProblem(
        new ApiFailure(404, { error: 'no such page', missing: { kind: 'page', value: route.path } }),
      );
      return;
  }
  void refresh();
}

document.addEventListener('click', (ev) => {
  const a = (ev.target as HTMLElement).closest('a[data-link]') as HTMLAnchorElement | null;
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || a.origin !== location.origin) return;
  ev.preventDefault();
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', mount);
window.addEventListener('cm:navigate', mount);

function connectLive(): void {
  const events = new EventSource('/api/events');
  // Every token refetches, the first too: a write between the page's load and the channel's
  // first answer would otherwise go unseen (one extra fetch per connection is cheap).
  events.addEventListener('change', () => {
    live.classList.add('on');
    live.classList.remove('off');
    void refresh();
  });
  events.addEventListener('unavailable', (ev) => {
    live.classList.add('off');
    const data = JSON.parse((ev as MessageEvent<string>).data) as { error: string };
    showBanner(`The store cannot be reached: ${data.error}. Retrying…`);
  });
  events.onerror = () => {
    live.classList.add('off');
    live.classList.remove('on');
  };
}

void getJson<{ store: string }>('/api/status')
  .then((s) => {
    document.getElementById('store')!.textContent = s.store;
  })
  .catch(() => undefined);
connectLive();
mount();
