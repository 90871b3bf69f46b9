/**
 * Activation streaming over loopback into the concept service: this project's gRPC client in this
 * process, the concept server (real pooling and dissection in a worker, records discarded) in a
 * child process. Sends raw conv checkpoints [D, H, W, C] float32 and prints the rate at which the
 * service received them (first chunk -> checkpoint end, measured by the service) and the client's
 * end-to-end rate including pooling, dissection and ack.
 *
 *   npm run bench:stream -- [checkpoints=6] [D=2000] [HW=8] [C=128]
 *
 * Target (issue 5): >= 200 MB/s into the service.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setLogLevel } from '@cm/core';
import { createMonitorClient } from '@cm/monitor-client';
import type { CheckpointInfo } from '@cm/concept-server';

async function main(): Promise<void> {
  setLogLevel('warn');
  const [checkpoints = 6, d = 2000, hw = 8, c = 128] = process.argv.slice(2).map(Number);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(__dirname, 'stream-server.ts'), String(d)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const infos: CheckpointInfo[] = [];
  const port = await new Promise<number>((resolvePort) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('port ')) resolvePort(Number(line.slice(5)));
      else if (line.startsWith('{')) infos.push(JSON.parse(line) as CheckpointInfo);
    });
  });
  const chunkBytes = Number(process.env.CM_BENCH_CHUNK_BYTES ?? 1024 * 1024);
  const client = createMonitorClient({ target: `127.0.0.1:${port}`, chunkBytes });
  try {
    await client.startRun({
      runId: 'bench-stream',
      model: 'bench',
      paradigm: 'standard',
      bundleId: 'random',
      layers: [{ name: 'conv', width: c, kind: 'conv' }],
      tags: {},
    });
    const data = new Float32Array(d * hw * hw * c);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 1000;
    const bytes = data.byteLength;
    const t0 = performance.now();
    for (let step = 0; step < checkpoints; step++) {
      await client.sendCheckpoint({
        step,
        layers: [{ layer: 'conv', shape: [d, hw, hw, c], data }],
        metrics: { loss: 1 },
      });
    }
    const wall = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 100)); // last info line
    const rate = (i: CheckpointInfo): number => i.bytes / 1e6 / (i.receiveMs / 1000);
    const rates = infos.map(rate).sort((a, b) => a - b);
    console.log(
      `stream bench: ${checkpoints} checkpoints of [${d}, ${hw}, ${hw}, ${c}] float32 = ${(bytes / 1e6).toFixed(1)} MB each, chunks of ${chunkBytes} bytes, loopback, service in its own process`,
    );
    for (const i of infos)
      console.log(
        `  step ${i.step}: received in ${i.receiveMs} ms (${rate(i).toFixed(0)} MB/s); pooled, dissected, acked in ${i.processMs} ms`,
      );
    console.log(
      `into the service: median ${rates[Math.floor(rates.length / 2)].toFixed(0)} MB/s, best ${rates[rates.length - 1].toFixed(0)} MB/s (target >= 200 MB/s)`,
    );
    console.log(
      `end to end incl. pooling, dissection and ack, one checkpoint at a time: ${((bytes * checkpoints) / 1e6 / wall).toFixed(0)} MB/s`,
    );
  } finally {
    await client.close();
    child.kill('SIGTERM');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
