import type { Command } from 'commander';
import { CmError, createLogger } from '@cm/core';
import { loadConfig } from '@cm/config';
import { TABLES } from '@cm/contracts';
import { sqlString, type Store } from '@cm/store';
import {
  addTrainOptions,
  formatRunSummary,
  learnedPercent,
  ownClassAccuracy,
  parseParadigm,
  TRAIN_DEFAULTS,
  type TrainFlags,
  type TrainRunResult,
} from '@cm/train';
import { addMonitorOptions, openMonitor, runTrainCommand, type MonitorFlags } from './train';
import { startDemoView } from './ui';

const log = createLogger('demo');

/** Per-paradigm presets that keep `cm demo` within about five minutes on two cores. */
const PRESETS: Record<string, Partial<TrainFlags>> = {
  standard: { steps: 1000 },
  adversarial: { steps: 500, attack: 'pgd', attackSteps: 2, eps: 4 / 255 },
  lottery: { steps: 400, rounds: 2, pruneRate: 0.6 },
  finetune: { steps: 400, task: 'colour', freeze: 'conv1' },
};

export interface RunReadout {
  runId: string;
  /**
   * first / last: the association share (interpretable under the shuffle null); learnedFirst /
   * learnedLast: the learned-concept share (beyond random init, docs/dissect.md), null without a baseline.
   */
  layers: {
    layer: string;
    firstStep: number;
    lastStep: number;
    first: number;
    last: number;
    learnedFirst: number | null;
    learnedLast: number | null;
  }[];
  logits?: { accuracy: number; wrong: { neuron: number; className: string; label: string }[] };
}

/** What the store holds about a finished run: interpretable share per layer at its first and last checkpoint, and the logit labels. */
export async function readRun(store: Store, run: TrainRunResult, classNames: string[]): Promise<RunReadout> {
  const rows = await store.query<{
    layer: string;
    step: number | string;
    interpretable_fraction: number;
    learned_fraction: number | null;
  }>(
    `SELECT layer, step, interpretable_fraction, learned_fraction FROM ${TABLES.layerMetrics} FINAL WHERE run_id = ${sqlString(run.runId)} ORDER BY layer, step`,
  );
  const byLayer = new Map<string, { step: number; v: number; learned: number | null }[]>();
  for (const r of rows) {
    const list = byLayer.get(r.layer) ?? [];
    const learned = r.learned_fraction === null ? null : Number(r.learned_fraction);
    list.push({ step: Number(r.step), v: Number(r.interpretable_fraction), learned });
    byLayer.set(r.layer, list);
  }
  const layers = [...byLayer].map(([layer, list]) => ({
    layer,
    firstStep: list[0].step,
    lastStep: list[list.length - 1].step,
    first: list[0].v,
    last: list[list.length - 1].v,
    learnedFirst: list[0].learned,
    learnedLast: list[list.length - 1].learned,
  }));
  const lastStep = Math.max(...layers.map((l) => l.lastStep), 0);
  const labels = await store.query<{ neuron: number | string; concept: string }>(
    `SELECT neuron, concept FROM ${TABLES.neuronLabels} FINAL WHERE run_id = ${sqlString(run.runId)} AND layer = 'logits' AND step = ${lastStep} ORDER BY neuron`,
  );
  const logits = labels.length
    ? ownClassAccuracy(
        labels.map((l) => ({ neuron: Number(l.neuron), concept: l.concept })),
        classNames,
      )
    : undefined;
  return { runId: run.runId, layers, logits };
}

export function formatReadout(r: RunReadout): string[] {
  const lines = [
    `  ${r.runId}: learned concepts (interpretable beyond random init), first -> last checkpoint; association with P (shuffle null) beside it`,
  ];
  for (const l of r.layers)
    lines.push(
      `    ${l.layer.padEnd(14)} learned ${learnedPercent(l.learnedFirst)} (step ${l.firstStep}) -> ${learnedPercent(l.learnedLast)} (step ${l.lastStep})   association ${(100 * l.first).toFixed(0).padStart(3)}% -> ${(100 * l.last).toFixed(0).padStart(3)}%`,
    );
  if (r.logits) {
    const wrong = r.logits.wrong.map((w) => `${w.className} labelled '${w.label}'`).join(', ');
    lines.push(
      `    logit neurons labelled with their own class: ${(100 * r.logits.accuracy).toFixed(0)}%${wrong ? ` (${wrong})` : ''}`,
    );
  }
  return lines;
}

export function registerDemo(program: Command): void {
  const cmd = program
    .command('demo')
    .description(
      'train the default model on the synthetic world, monitored live (all-in-one: nothing to set up), then show what to look at',
    );
  cmd.option('--no-ui', 'do not start the web view (cm ui) while the demo trains');
  addMonitorOptions(addTrainOptions(cmd)).action(
    async (flags: TrainFlags & MonitorFlags & { ui?: boolean }, command: Command) => {
      const paradigm = parseParadigm(flags.paradigm);
      // Presets fill only the options the user did not give.
      const merged = { ...flags } as TrainFlags & MonitorFlags & { ui?: boolean } & Record<string, unknown>;
      for (const [k, v] of Object.entries(PRESETS[paradigm])) {
        if (command.getOptionValueSource(k) === 'default' || command.getOptionValueSource(k) === undefined)
          merged[k] = v;
      }
      const config = loadConfig();
      const started = Date.now();
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
      const base = flags.runId ?? `demo-${paradigm}-${stamp}`;
      const handle = await openMonitor(config, merged, 'cm demo');
      const view =
        merged.ui === false
          ? undefined
          : await startDemoView(handle, config, (l) => process.stdout.write(l + '\n'));
      const runs: { run: TrainRunResult; classNames: string[] }[] = [];
      try {
        if (paradigm === 'finetune' && !merged.from) {
          // Fine-tuning needs a trained source: train one on the shape task first (its own run).
          log.info('fine-tune demo: training the source model on the shape task first');
          const src = await runTrainCommand(
            {
              ...merged,
              paradigm: 'standard',
              task: TRAIN_DEFAULTS.task,
              steps: command.getOptionValueSource('steps') === 'cli' ? merged.steps : 600,
              runId: `${base}-source`,
            } as TrainFlags,
            handle,
            config,
          );
          src.result.runs.forEach((run) => runs.push({ run, classNames: src.classNames }));
          merged.from = src.result.runs[0].savedTo;
        }
        const out = await runTrainCommand({ ...merged, runId: base } as TrainFlags, handle, config);
        out.result.runs.forEach((run) => runs.push({ run, classNames: out.classNames }));

        const w = (s: string) => process.stdout.write(s + '\n');
        w('');
        w(`Concept-Monitor demo (${paradigm}) finished in ${((Date.now() - started) / 1000).toFixed(0)} s`);
        for (const { run } of runs) w('  ' + formatRunSummary(run));
        if (handle.store) {
          w('What the store says:');
          for (const { run, classNames } of runs)
            formatReadout(await readRun(handle.store, run, classNames)).forEach(w);
        }
        const runId = runs[runs.length - 1].run.runId;
        w('');
        w('Look further:');
        // In --stack mode the rows are in the ClickHouse server the recorder writes to, not the embedded store.
        const store = handle.mode === 'stack' ? ` --store ${config.clickhouse.url}` : '';
        w(`  npx cm runs${store}                                   # every run, its paradigm and status`);
        w(
          `  npx cm sql${store} "SELECT layer, step, learned_fraction, interpretable_fraction, distinct_concept_share FROM layer_metrics FINAL WHERE run_id = '${runId}' ORDER BY layer, step"`,
        );
        w(
          `  npx cm sql${store} "SELECT neuron, concept, score FROM neuron_labels FINAL WHERE run_id = '${runId}' AND layer = 'logits' ORDER BY step DESC, neuron LIMIT 20"`,
        );
        w(
          `  npx cm sql${store} "SELECT paradigm, layer, avg(category_shares.share[indexOf(category_shares.category, 'colour')]) AS colour_share FROM layer_metrics FINAL JOIN runs FINAL USING run_id GROUP BY paradigm, layer"`,
        );
        w(
          `  npx cm ui${store}                                     # the web view again (${view?.url ?? 'http://127.0.0.1:6060/'})`,
        );
        w(`  npx cm demo --paradigm adversarial | lottery | finetune   # the other paradigms, same store`);
        if (handle.mode !== 'stack')
          w(
            `  npx cm stack up && npx cm demo --stack        # the real services: concept service, NATS, recorder, ClickHouse`,
          );
        w(
          `  Grafana: docker compose -f deploy/docker-compose.yml --env-file deploy/.env up -d, then cm demo --stack with CM_GRPC_TARGET=<host>:50051 (docs/production.md)`,
        );
        if (runs.some((r) => r.run.status === 'failed'))
          throw new CmError('INTERNAL', 'the demo run stopped before its last step');
      } finally {
        await view?.close();
        await handle.close();
      }
    },
  );
}
