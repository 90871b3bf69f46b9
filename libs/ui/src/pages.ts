import type { ApiError } from './api-types';

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const head = (title: string): string => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/assets/app.css">
</head>`;

/** The single-page app's shell: every view is drawn by /assets/app.js from the URL's path. */
export function shellPage(): string {
  return `${head('Concept-Monitor')}
<body>
<div id="app"></div>
<script src="/assets/app.js"></script>
</body>
</html>
`;
}

/** A page for an unknown run, layer, neuron or path: says what was not found and links home. */
export function errorPage(status: number, error: ApiError): string {
  const what = error.missing
    ? `Unknown ${escapeHtml(error.missing.kind)}: <code>${escapeHtml(error.missing.value)}</code>`
    : escapeHtml(error.error);
  return `${head(`${status} · Concept-Monitor`)}
<body>
<header class="top"><a class="brand" href="/">Concept-Monitor</a></header>
<main class="error-page" data-status="${status}">
<h1>${status === 404 ? 'Not found' : 'Error'}</h1>
<p class="missing">${what}</p>
${error.hint ? `<p class="hint">${escapeHtml(error.hint)}</p>` : ''}
<p><a href="/">All runs</a></p>
</main>
</body>
</html>
`;
}
