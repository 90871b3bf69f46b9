import { recordsToRows, openStore } from '../src';
import { labelsRecord } from '../test/fixtures';
(async () => {
  const store = await openStore({ kind: 'server', url: 'http://127.0.0.1:28571', user: 'default', password: '', database: 'perf' });
  await store.migrate();
  const recs = [] as any[];
  for (let s = 0; s < 200; s++) for (const w of [64, 128, 256, 512]) recs.push(labelsRecord('p', 'l' + w, s, w));
  for (let k = 0; k < 2; k++) {
  let t = performance.now();
  const rows = recordsToRows(recs);
  console.log('toRows', (performance.now() - t).toFixed(0), rows.lines.neuronLabels.length);
  t = performance.now();
  await store.insertRows(rows);
  console.log('insertRows', (performance.now() - t).toFixed(0));
  t = performance.now();
  const body = rows.lines.neuronLabels.join('\n') + '\n';
  const r = await fetch('http://127.0.0.1:28571/?query=' + encodeURIComponent('INSERT INTO perf.neuron_labels FORMAT JSONEachRow'), { method: 'POST', body });
  console.log('raw fetch insert', (performance.now() - t).toFixed(0), r.status, body.length);
  t = performance.now();
  const tsv = rows.lines.neuronLabels.map((l) => { const o = JSON.parse(l); return [o.run_id, o.layer, o.step, o.neuron, o.concept, o.category, o.score, o.interpretable, o.dead, "['dog','cat','sky']", '[0.3,0.2,0.1]', o.x, o.y, o.time, o.time_ms].join('\t'); }).join('\n') + '\n';
  const t2 = performance.now();
  const r2 = await fetch('http://127.0.0.1:28571/?query=' + encodeURIComponent('INSERT INTO perf.neuron_labels FORMAT TabSeparated'), { method: 'POST', body: tsv });
  console.log('raw fetch TSV insert', (performance.now() - t2).toFixed(0), r2.status, tsv.length, await r2.text());
  }
  await store.close();
})();
