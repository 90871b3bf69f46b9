import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createClient } from '@clickhouse/client';
import type { LabelsRecord } from '@cm/contracts';
import { freePort } from '@cm/core';
import { startClickHouse } from '@cm/stack';
import { appendRows, emptyRows, NEURON_LABEL_COLUMNS, openStore } from '@cm/store';
import { labelsRecord } from '../../../libs/store/test/fixtures';
const WIDTHS = [64, 128, 256, 512];
const recs: LabelsRecord[] = [];
for (let s = 0; s < 200; s++) WIDTHS.forEach((w, i) => recs.push(labelsRecord('bench-recorder', `layer${i}_${w}`, s, w)));

function rb(records: LabelsRecord[]): Buffer {
  let buf = Buffer.allocUnsafe(1 << 20); let o = 0;
  const ensure = (n: number) => { if (o + n > buf.length) { const b = Buffer.allocUnsafe(Math.max(buf.length * 2, o + n)); buf.copy(b, 0, 0, o); buf = b; } };
  const cache = new Map<string, Buffer>();
  const sb = (s: string) => { let b = cache.get(s); if (!b) { const u = Buffer.from(s); const h: number[] = []; let n = u.length; do { let c = n & 0x7f; n >>>= 7; if (n) c |= 0x80; h.push(c); } while (n); b = Buffer.concat([Buffer.from(h), u]); cache.set(s, b); } return b; };
  for (const r of records) {
    const ms = Date.parse(r.time);
    const prefix = Buffer.concat([sb(r.runId), sb(r.layer), Buffer.from(new Uint32Array([r.step]).buffer)]);
    for (const l of r.labels) {
      ensure(512);
      o += prefix.copy(buf, o);
      buf.writeUInt32LE(l.neuron, o); o += 4;
      o += sb(l.concept).copy(buf, o); o += sb(l.category).copy(buf, o);
      buf.writeFloatLE(l.score, o); o += 4;
      buf[o++] = l.interpretable ? 1 : 0; buf[o++] = l.dead ? 1 : 0;
      buf[o++] = l.topConcepts.length; for (const c of l.topConcepts) o += sb(c).copy(buf, o);
      buf[o++] = l.topScores.length; for (const c of l.topScores) { buf.writeFloatLE(c, o); o += 4; }
      buf.writeFloatLE(l.x, o); o += 4; buf.writeFloatLE(l.y, o); o += 4;
      buf.writeUInt32LE(Math.floor(ms / 1000), o); o += 4;
      buf.writeBigUInt64LE(BigInt(ms), o); o += 8;
    }
  }
  return buf.subarray(0, o);
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'cm-scratch-'));
  const ch = await startClickHouse({ dir, httpPort: await freePort(), tcpPort: await freePort() });
  try {
    const store = await openStore({ kind: 'server', url: ch.url, user: 'default', password: '', database: 'x' });
    await store.migrate(); await store.close();
    const client = createClient({ url: ch.url, database: 'x' });
    for (let rep = 0; rep < 3; rep++) {
      let t = performance.now();
      const tsv: string[] = []; const bins: Buffer[] = [];
      for (let i = 0; i < recs.length; i += 100) { const rows = emptyRows(); recs.slice(i, i + 100).forEach((r) => appendRows(rows, r)); tsv.push(rows.lines.neuronLabels.join('\n') + '\n'); }
      const encT = performance.now() - t; t = performance.now();
      for (let i = 0; i < recs.length; i += 100) bins.push(rb(recs.slice(i, i + 100)));
      const encB = performance.now() - t;
      for (const [fmt, bodies] of [['TabSeparated', tsv], ['RowBinary', bins]] as const) {
        const cpu0 = process.cpuUsage(); t = performance.now();
        for (const body of bodies) {
          const r = await client.exec({ query: `INSERT INTO neuron_labels (${NEURON_LABEL_COLUMNS.join(',')}) FORMAT ${fmt}`, values: Readable.from([body]) });
          await new Promise((res, rej) => r.stream.on('end', res).on('error', rej).resume());
        }
        const cpu = process.cpuUsage(cpu0);
        console.log(fmt, 'insert ms', (performance.now() - t).toFixed(0), 'node cpu ms', ((cpu.user + cpu.system) / 1000).toFixed(0), 'bytes', bodies.reduce((a, b) => a + b.length, 0));
      }
      console.log('encode tsv', encT.toFixed(0), 'rowbinary', encB.toFixed(0));
    }
    const rows = await (await client.query({ query: 'SELECT count(), sum(score), sum(arraySum(top_scores)), sum(x), any(concept), uniqExact(concept) FROM neuron_labels', format: 'TSV' })).text();
    console.log(rows);
    await client.close();
  } finally { await ch.stop(); rmSync(dir, { recursive: true, force: true }); }
}
main();
