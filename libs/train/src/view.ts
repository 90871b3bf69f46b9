import cliProgress from 'cli-progress';
import type { CheckpointResult, MonitoredLayer } from '@cm/contracts';
import { setSink } from '@cm/core';
import type { StepStats, TrainObserver, TrainRunResult } from './loop';

/** A learned-concept share as a percentage, or 'n/a' while the run has no random-init baseline. */
export function learnedPercent(f: number | null | undefined, pad = 3): string {
  return typeof f === 'number' ? `${(100 * f).toFixed(0).padStart(pad)}%` : 'n/a'.padStart(pad + 1);
}

/**
 * One line per monitored layer: the learned-concept share (beyond random init, docs/dissect.md),
 * the association share (interpretable under the shuffle null), diversity and the most common concepts.
 */
export function formatCheckpoint(step: number, result: CheckpointResult): string[] {
  const lines = [`checkpoint ${step}:`];
  for (const l of result.layers) {
    const top = l.topConcepts
      .slice(0, 3)
      .map((c) => `${c.concept} x${c.count}`)
      .join(', ');
    lines.push(
      `  ${l.layer.padEnd(16)} learned ${learnedPercent(l.learnedFraction)}  association ${(100 * l.interpretableFraction).toFixed(0).padStart(3)}%  diversity ${(100 * l.distinctConceptShare).toFixed(0).padStart(3)}%  top: ${top}`,
    );
  }
  for (const a of result.alerts) lines.push(`  ALERT ${a.state} ${a.rule} on ${a.layer}: ${a.message}`);
  return lines;
}

/**
 * Test accuracy at or below this is "at chance level": 1 / classes plus a margin of
 * min(10 points, 1 / classes), so 8 classes -> 22.5 %, 10 -> 20 %, 2 -> 60 %, 100 -> 2 %.
 */
export function chanceLevel(classes: number): number {
  const chance = 1 / Math.max(1, classes);
  return chance + Math.min(0.1, chance);
}

/**
 * Per layer at the run's first and last acknowledged checkpoint: the learned-concept share (beyond
 * random init, docs/dissect.md; n/a without a random-init baseline) first, the association share
 * (shuffle null) beside it. Empty when no checkpoint came back with a result.
 */
export function formatLearnedSummary(r: TrainRunResult): string[] {
  const acked = r.checkpoints.filter((c) => c.result);
  if (acked.length === 0) return [];
  const first = acked[0];
  const last = acked[acked.length - 1];
  const lines = [
    `  learned concepts (association with P, shuffle null), step ${first.step} -> ${last.step}:`,
  ];
  for (const l of last.result!.layers) {
    const f = first.result!.layers.find((x) => x.layer === l.layer);
    const assoc = (v: number | undefined) => (v === undefined ? 'n/a' : `${(100 * v).toFixed(0)}%`);
    lines.push(
      `    ${l.layer.padEnd(16)} ${learnedPercent(f?.learnedFraction)} -> ${learnedPercent(l.learnedFraction)}   (${assoc(f?.interpretableFraction)} -> ${assoc(l.interpretableFraction)})`,
    );
  }
  return lines;
}

export function formatRunSummary(r: TrainRunResult): string {
  const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;
  const chance =
    r.testAccuracy !== undefined && r.classes > 1 && r.testAccuracy <= chanceLevel(r.classes)
      ? ` (at chance level: ${r.classes} classes, chance ${pct(1 / r.classes)}: the model has not learned the task; train longer or lower the learning rate)`
      : '';
  const test = r.testAccuracy !== undefined ? `, test accuracy ${pct(r.testAccuracy)}${chance}` : '';
  const sent = r.checkpoints.filter((c) => c.status === 'ok').length;
  const late = r.checkpoints.filter((c) => c.status === 'spooled').length;
  const dropped = r.checkpoints.filter((c) => c.status === 'dropped').length;
  const failed = r.checkpoints.filter((c) => c.status === 'failed').length;
  const delivery =
    (late ? `, ${late} delivered late from the spool` : '') +
    (dropped ? `, ${dropped} dropped` : '') +
    (failed ? `, ${failed} failed` : '');
  const lottery = r.lottery
    ? `, lottery round ${r.lottery.round} at sparsity ${pct(r.lottery.sparsity)}`
    : '';
  const bundle = r.bundleId ? `, probe bundle ${r.bundleId}` : '';
  const diversity = r.diversity
    ? `, diversity regulariser weight ${r.diversity.weight} (term ${r.diversity.finalTerm.toFixed(3)} over the last window)`
    : '';
  return (
    `run ${r.runId} (${r.paradigm}) ${r.status}: ${r.steps} steps in ${r.totalSeconds.toFixed(0)} s${lottery}${diversity}, ` +
    `loss ${r.finalLoss.toFixed(3)} (mean of the last checkpoint window, as stored)${test}, ${r.imagesPerSecond.toFixed(0)} images/s, ` +
    `monitoring ${(100 * r.monitorOverhead).toFixed(1)}% of the time, ${sent} checkpoints monitored${delivery}${bundle}`
  );
}

/**
 * The terminal view: a progress bar (step, loss, accuracy, images/s) with each checkpoint's layer
 * summary and alerts printed above it. Not on a TTY it is quiet: one line per checkpoint and the
 * summary, so logs of a service stay readable.
 */
export class TerminalView implements TrainObserver {
  private multibar?: cliProgress.MultiBar;
  private bar?: cliProgress.SingleBar;
  private restoreSink?: (line: string) => void;
  private last?: StepStats;
  private readonly tty: boolean;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    opts: { tty?: boolean } = {},
  ) {
    this.tty = opts.tty ?? Boolean(out.isTTY);
  }

  private print(line: string): void {
    if (this.multibar) this.multibar.log(line + '\n');
    else this.out.write(line + '\n');
  }

  onStart(info: {
    runId: string;
    paradigm: string;
    totalSteps: number;
    startStep: number;
    layers: MonitoredLayer[];
  }): void {
    this.print(
      `training ${info.runId} (${info.paradigm}), monitoring ${info.layers.map((l) => `${l.name}[${l.width}]`).join(', ')}`,
    );
    if (!this.tty) return;
    this.multibar = new cliProgress.MultiBar(
      {
        stream: this.out,
        format: ' {bar} {value}/{total} steps | loss {loss} | acc {acc} | {rate} img/s | epoch {epoch}',
        hideCursor: true,
        clearOnComplete: false,
        barsize: 24,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar = this.multibar.create(info.totalSteps, info.startStep, {
      loss: '-',
      acc: '-',
      rate: '-',
      epoch: 0,
    });
    // Log lines from anywhere (monitor warnings) go above the bar instead of through it.
    this.restoreSink = setSink((line) => this.multibar?.log(line + '\n'));
  }

  onStep(s: StepStats): void {
    this.last = s;
    this.bar?.update(s.step, {
      loss: s.loss.toFixed(3),
      acc: (100 * s.accuracy).toFixed(0) + '%',
      rate: s.imagesPerSecond.toFixed(0),
      epoch: s.epoch,
    });
  }

  onCheckpoint(step: number, result: CheckpointResult): void {
    const lines = formatCheckpoint(step, result);
    if (this.tty) for (const l of lines) this.print(l);
    else {
      const s = this.last;
      const now = s
        ? ` (training at step ${s.step}/${s.totalSteps}: loss ${s.loss.toFixed(3)}, acc ${(100 * s.accuracy).toFixed(0)}%, ${s.imagesPerSecond.toFixed(0)} img/s)`
        : '';
      const layers = result.layers
        .map(
          (l) =>
            `${l.layer} ${learnedPercent(l.learnedFraction, 0)}/${(100 * l.interpretableFraction).toFixed(0)}%/${(100 * l.distinctConceptShare).toFixed(0)}%`,
        )
        .join(' ');
      this.print(`checkpoint ${step}: learned/association/diversity ${layers}${now}`);
      for (const a of result.alerts) this.print(`ALERT ${a.state} ${a.rule} on ${a.layer}: ${a.message}`);
    }
  }

  onWarning(message: string): void {
    this.print(`warning: ${message}`);
  }

  onEnd(r: TrainRunResult): void {
    this.stop();
    this.print(formatRunSummary(r));
  }

  /** Stop the bar (also on errors, so the terminal is left clean). */
  stop(): void {
    if (this.restoreSink) setSink(this.restoreSink);
    this.restoreSink = undefined;
    this.multibar?.stop();
    this.multibar = undefined;
    this.bar = undefined;
  }
}
