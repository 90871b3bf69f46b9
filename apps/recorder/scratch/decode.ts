import { toMessages } from '@cm/bus';
import { validateRecord, type CmRecord } from '@cm/contracts';
import { appendRows, emptyRows } from '@cm/store';
import { labelsRecord } from '../../../libs/store/test/fixtures';
const WIDTHS = [64, 128, 256, 512];
const recs: CmRecord[] = [];
for (let s = 0; s < 200; s++) WIDTHS.forEach((w, i) => recs.push(labelsRecord('bench-recorder', `layer${i}_${w}`, s, w)));
const msgs = toMessages(recs);
console.log('bytes', msgs.reduce((a, m) => a + m.body.byteLength, 0));
for (let rep = 0; rep < 5; rep++) {
  let t = performance.now();
  const parsed = msgs.map((m) => validateRecord(JSON.parse(new TextDecoder().decode(m.body))));
  const tp = performance.now() - t;
  t = performance.now();
  let len = 0;
  for (let i = 0; i < parsed.length; i += 100) {
    const rows = emptyRows();
    for (const r of parsed.slice(i, i + 100)) appendRows(rows, r);
    len += (rows.lines.neuronLabels.join('\n') + '\n').length;
  }
  console.log('parse', tp.toFixed(0), 'encode', (performance.now() - t).toFixed(0), len);
}
