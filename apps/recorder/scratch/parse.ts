import type { LabelsRecord } from '@cm/contracts';
import { labelsRecord } from '../../../libs/store/test/fixtures';
const WIDTHS = [64, 128, 256, 512];
const recs: LabelsRecord[] = [];
for (let s = 0; s < 200; s++) WIDTHS.forEach((w, i) => recs.push(labelsRecord('bench-recorder', `layer${i}_${w}`, s, w)));
const enc = new TextEncoder();
function cols(r: LabelsRecord, b64: boolean) {
  const dict: string[] = []; const idx = new Map<string, number>();
  const id = (s: string) => { let i = idx.get(s); if (i === undefined) { idx.set(s, (i = dict.length)); dict.push(s); } return i; };
  const L = r.labels;
  const f = (a: number[]) => b64 ? Buffer.from(new Float64Array(a).buffer).toString('base64') : a;
  const { labels, ...head } = r;
  return { ...head, columns: { strings: dict, neuron: L.map(l => l.neuron), concept: L.map(l => id(l.concept)), category: L.map(l => id(l.category)),
    score: f(L.map(l => l.score)), interpretable: L.map(l => +l.interpretable), dead: L.map(l => +l.dead),
    topCounts: L.map(l => l.topConcepts.length), topConcepts: L.flatMap(l => l.topConcepts.map(id)), topScores: f(L.flatMap(l => l.topScores)), x: f(L.map(l => l.x)), y: f(L.map(l => l.y)) } };
}
const forms = {
  rows: recs.map(r => enc.encode(JSON.stringify(r))),
  cols: recs.map(r => enc.encode(JSON.stringify(cols(r, false)))),
  colsB64: recs.map(r => enc.encode(JSON.stringify(cols(r, true)))),
};
const dec = new TextDecoder();
for (let rep = 0; rep < 4; rep++) for (const [k, msgs] of Object.entries(forms)) {
  const t = performance.now(); let n = 0;
  for (const m of msgs) { const v = JSON.parse(dec.decode(m)); n += v.labels ? v.labels.length : v.columns.neuron.length; if (k === 'colsB64') { Buffer.from(v.columns.score, 'base64'); Buffer.from(v.columns.topScores, 'base64'); Buffer.from(v.columns.x, 'base64'); Buffer.from(v.columns.y, 'base64'); } }
  console.log(k, (performance.now() - t).toFixed(0), 'ms', msgs.reduce((a, m) => a + m.length, 0), 'bytes', n);
}
