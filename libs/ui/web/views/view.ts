/** A view: builds its layout once, then `refresh` (re)fetches its data and redraws in place. */
export interface View {
  refresh(): Promise<void>;
  dispose?(): void;
}

/** A card with a title, optional note and a body element (a chart or a table). */
export function card(
  parent: HTMLElement,
  title: string,
  opts: { cls?: string; note?: string; id?: string } = {},
): HTMLElement {
  const el = document.createElement('section');
  el.className = `card ${opts.cls ?? ''}`;
  el.innerHTML = `<h2>${title}</h2>${opts.note ? `<p class="note">${opts.note}</p>` : ''}`;
  const body = document.createElement('div');
  body.className = 'body';
  if (opts.id) body.id = opts.id;
  el.appendChild(body);
  parent.appendChild(el);
  return body;
}

/**
 * The retention note of a run's pages: where label retention thinned the run, the page says so
 * (the element `#thinned` of the view's layout, hidden when nothing was thinned).
 */
export const THINNED_NOTE = '<p class="thinned-note" id="thinned" hidden></p>';
export function showThinned(root: HTMLElement, thinned: string, what: string): void {
  const el = root.querySelector<HTMLElement>('#thinned');
  if (!el) return;
  el.hidden = thinned === '';
  el.textContent = thinned
    ? `Thinned by label retention (${thinned}): ${what} Layer metrics and checkpoints are kept at every step.`
    : '';
}

export function chartBox(
  parent: HTMLElement,
  title: string,
  name: string,
  height = 260,
  note?: string,
): HTMLElement {
  const body = card(parent, title, { note, cls: 'chart-card' });
  body.classList.add('chart');
  body.dataset.chart = name;
  body.style.height = `${height}px`;
  return body;
}
