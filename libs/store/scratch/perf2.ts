import { recordsToRows, openStore } from '../src';
import { labelsRecord } from '../test/fixtures';
const TSV_ESC: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' };
const tsvStr = (s: string) => (/[\\\t\n\r\0]/.test(s) ? s.replace(/[\\\t\n\r\0]/g, (c) => TSV_ESC[c]) : s);
const Q_ESC: Record<string, string> = { '\\': '\\\\', "'": "\\'", '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' };
const quoted = (s: string) => "'" + (/[\\'\t\n\r\0]/.test(s) ? s.replace(/[\\'\t\n\r\0]/g, (c) => Q_ESC[c]) : s) + "'";
(async () => {
  const store = await openStore({ kind: 'server', url: 'http://127.0.0.1:28571', user: 'default', password: '', database: 'perf' });
  await store.migrate();
  const recs = [] as any[];
  for (let s = 0; s < 200; s++) for (const w of [64, 128, 256, 512]) recs.push(labelsRecord('p', 'l' + w, s, w));
  for (let k = 0; k < 3; k++) {
    let t = performance.now();
    const rows = recordsToRows(recs);
    console.log('json toRows', (performance.now() - t).toFixed(0));
    t = performance.now();
    const lines: string[] = [];
    for (const r of recs) {
      const prefix = tsvStr(r.runId) + '\t' + tsvStr(r.layer) + '\t' + r.step + '\t';
      const suffix = '\t1767225600\t1767225600000';
      for (const l of r.labels) {
        lines.push(prefix + l.neuron + '\t' + tsvStr(l.concept) + '\t' + tsvStr(l.category) + '\t' + l.score + '\t' + (l.interpretable ? 1 : 0) + '\t' + (l.dead ? 1 : 0) + '\t[' + l.topConcepts.map(quoted).join(',') + ']\t[' + l.topScores.join(',') + ']\t' + l.x + '\t' + l.y + suffix);
      }
    }
    const tsv = lines.join('\n') + '\n';
    console.log('tsv encode', (performance.now() - t).toFixed(0));
    t = performance.now();
    const body = rows.lines.neuronLabels.join('\n') + '\n';
    let r = await fetch('http://127.0.0.1:28571/?query=' + encodeURIComponent('INSERT INTO perf.neuron_labels FORMAT JSONEachRow'), { method: 'POST', body });
    console.log('json insert', (performance.now() - t).toFixed(0), r.status);
    t = performance.now();
    r = await fetch('http://127.0.0.1:28571/?query=' + encodeURIComponent('INSERT INTO perf.neuron_labels FORMAT TabSeparated'), { method: 'POST', body: tsv });
    console.log('tsv insert', (performance.now() - t).toFixed(0), r.status, r.status !== 200 ? (await r.text()).slice(0, 300) : '');
    t = performance.now();
    for (const m of recs) JSON.parse(JSON.stringify(m));
    console.log('json roundtrip of records', (performance.now() - t).toFixed(0));
  }
  await store.close();
})();
