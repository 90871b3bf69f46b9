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
