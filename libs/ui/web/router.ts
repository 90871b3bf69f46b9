import { parseRoute, type Route } from './routes';

export { parseRoute, type Route };

export function navigate(url: string): void {
  history.pushState(null, '', url);
  window.dispatchEvent(new Event('cm:navigate'));
}

/** The query string's value, or undefined. */
export const queryParam = (name: string): string | undefined =>
  new URLSearchParams(location.search).get(name) ?? undefined;

/** Set (or remove) query parameters without a new history entry. */
export function replaceQuery(values: Record<string, string | undefined>): void {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || v === '') q.delete(k);
    else q.set(k, v);
  }
  const s = q.toString();
  history.replaceState(null, '', `${location.pathname}${s ? `?${s}` : ''}`);
}
