/** The view a URL path names. Paths are shareable links; segments are percent-encoded. */
export type Route =
  | { view: 'runs' }
  | { view: 'overview'; run: string }
  | { view: 'layer'; run: string; layer: string }
  | { view: 'map'; run: string; layer: string }
  | { view: 'neuron'; run: string; layer: string; neuron: string }
  | { view: 'compare'; a: string; b: string }
  | { view: 'unknown'; path: string };

export function parseRoute(pathname: string): Route {
  const parts = pathname
    .split('/')
    .filter((p) => p !== '')
    .map((p) => decodeURIComponent(p));
  if (parts.length === 0) return { view: 'runs' };
  if (parts[0] === 'runs' && parts.length >= 2) {
    const run = parts[1];
    if (parts.length === 2) return { view: 'overview', run };
    if (parts[2] === 'layers' && parts.length >= 4) {
      const layer = parts[3];
      if (parts.length === 4) return { view: 'layer', run, layer };
      if (parts.length === 5 && parts[4] === 'map') return { view: 'map', run, layer };
      if (parts.length === 6 && parts[4] === 'neurons')
        return { view: 'neuron', run, layer, neuron: parts[5] };
    }
  }
  if (parts[0] === 'compare' && parts.length === 3) return { view: 'compare', a: parts[1], b: parts[2] };
  return { view: 'unknown', path: pathname };
}
