import type { ReportData } from './data';
import type { Figure } from './figures';

/** One self-contained page: every figure embedded as a data: URL, no script, nothing loaded from anywhere. */
const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function reportHtml(data: ReportData, figures: { figure: Figure; png: Buffer }[]): string {
  const runs = data.runs
    .map(
      (r) =>
        `<tr><td><code>${escapeHtml(r.info.runId)}</code></td><td>${escapeHtml(r.info.model)}</td><td>${escapeHtml(
          r.info.paradigm,
        )}</td><td><code>${escapeHtml(r.info.bundleId)}</code></td><td>${escapeHtml(r.info.status)}</td><td>${
          r.info.lastStep ?? '-'
        }</td><td>${r.info.checkpoints}</td><td>${escapeHtml(r.info.health)}${
          r.info.firingRules.length ? ` (${escapeHtml(r.info.firingRules.join(', '))})` : ''
        }</td><td>${escapeHtml(r.layers.join(', '))}</td></tr>`,
    )
    .join('\n');
  const title =
    data.runs.length > 1
      ? `Concept-Monitor report: ${data.runs[0].info.runId} vs ${data.runs[1].info.runId}`
      : `Concept-Monitor report: ${data.runs[0].info.runId}`;
  const notes = data.notes.map((n) => `<p class="note">${escapeHtml(n)}</p>`).join('\n');
  const body = figures
    .map(
      ({ figure, png }) => `<figure id="${escapeHtml(figure.file.replace(/\.png$/, ''))}">
<h2>${escapeHtml(figure.title)}</h2>
<img src="data:image/png;base64,${png.toString('base64')}" width="${figure.width}" height="${figure.height}" alt="${escapeHtml(
        figure.title,
      )}" data-file="${escapeHtml(figure.file)}">
<figcaption>${escapeHtml(figure.caption)} <a href="${escapeHtml(figure.file)}">${escapeHtml(figure.file)}</a></figcaption>
</figure>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 2rem auto; max-width: 1440px; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; font-size: 0.9rem; }
figure { margin: 2rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.note { color: #8a5a00; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<table>
<tr><th>run</th><th>model</th><th>paradigm</th><th>probe bundle</th><th>status</th><th>last step</th><th>checkpoints</th><th>health</th><th>layers</th></tr>
${runs}
</table>
${notes}
${body}
<p class="note">Generated ${escapeHtml(data.generatedAt)} by <code>cm report</code>.</p>
</body>
</html>
`;
}
