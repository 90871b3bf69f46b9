import type { RunRow, RunsAnswer } from '../../src/api-types';
import { escapeHtml, getJson, path } from '../api';
import { navigate } from '../router';
import type { View } from './view';

const statusPill = (r: RunRow): string =>
  `<span class="pill status-${escapeHtml(r.status)}">${escapeHtml(r.status)}</span>`;
const healthPill = (r: RunRow): string =>
  r.health === 'alerting'
    ? `<span class="pill alerting" title="${escapeHtml(r.firingRules.join(', '))}">alerting · ${r.firingAlerts}</span>`
    : `<span class="pill ok">ok</span>`;

export function runsView(root: HTMLElement): View {
  root.innerHTML = `
<div class="page-head"><div><h1>Runs</h1><p class="sub" id="runs-sub"></p></div>
<div class="actions"><button id="compare" class="primary" disabled>Compare the two selected runs</button></div></div>
<section class="card"><div class="body"><table class="grid runs" id="runs-table"><thead><tr>
<th></th><th>Run</th><th>Paradigm</th><th>Model</th><th>Status</th><th class="num">Last step</th><th class="num">Checkpoints</th><th>Health</th><th>Firing alerts</th><th>Started</th>
</tr></thead><tbody></tbody></table></div></section>`;
  const tbody = root.querySelector('tbody')!;
  const button = root.querySelector<HTMLButtonElement>('#compare')!;
  const chosen: string[] = [];
  const sync = (): void => {
    button.disabled = chosen.length !== 2;
    for (const box of tbody.querySelectorAll<HTMLInputElement>('input[type=checkbox]'))
      box.checked = chosen.includes(box.value);
  };
  tbody.addEventListener('change', (ev) => {
    const box = ev.target as HTMLInputElement;
    if (box.type !== 'checkbox') return;
    const i = chosen.indexOf(box.value);
    if (box.checked && i < 0) chosen.push(box.value);
    if (!box.checked && i >= 0) chosen.splice(i, 1);
    while (chosen.length > 2) chosen.shift();
    sync();
  });
  button.addEventListener('click', () => {
    if (chosen.length === 2) navigate(path('compare', chosen[0], chosen[1]));
  });
  return {
    async refresh() {
      const data = await getJson<RunsAnswer>('/api/runs');
      root.querySelector('#runs-sub')!.textContent =
        `${data.runs.length} run${data.runs.length === 1 ? '' : 's'} in ${data.store}. Tick two to compare them.`;
      tbody.innerHTML =
        data.runs
          .map(
            (r) => `<tr data-run="${escapeHtml(r.runId)}">
<td><input type="checkbox" value="${escapeHtml(r.runId)}" aria-label="compare ${escapeHtml(r.runId)}"></td>
<td><a href="${path('runs', r.runId)}" data-link class="run-link">${escapeHtml(r.runId)}</a></td>
<td>${escapeHtml(r.paradigm)}</td><td>${escapeHtml(r.model)}</td><td>${statusPill(r)}</td>
<td class="num">${r.lastStep ?? '–'}</td><td class="num">${r.checkpoints}</td><td>${healthPill(r)}</td>
<td>${r.firingRules.map((x) => `<span class="tag">${escapeHtml(x)}</span>`).join(' ') || '<span class="muted">none</span>'}</td>
<td class="muted">${escapeHtml(r.startedAt)}</td></tr>`,
          )
          .join('') ||
        `<tr><td colspan="10" class="muted">No runs in this store yet: start one with <code>npx cm demo</code>.</td></tr>`;
      sync();
    },
  };
}
