import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { CmError, readFloatMatrix, readNpyHeader, writeNpy } from '@cm/core';
import {
  DissectPool,
  softmaxInputFromNpy,
  computeSimilarityDetailed,
  type Matrix,
  type SoftmaxInput,
  SIMILARITY_METHODS,
  topConceptsPerNeuron,
  type SimilarityMethod,
  type SimilarityParams,
} from '@cm/dissect';

interface DissectFlags {
  probeScores: string;
  activations: string;
  method: string;
  out: string;
  topK?: string;
  a?: string;
  lambda?: string;
  minProb?: string;
  pStart?: string;
  pEnd?: string;
  minNorm?: string;
  power?: string;
  topFraction?: string;
  scaleP?: string;
  seed?: string;
  concepts?: string;
  labelsOut?: string;
  workers?: string;
  timings?: boolean;
}

function numberFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new CmError('INVALID_ARGUMENT', `--${name} must be a number, got '${value}'`, {
      context: { flag: name, value },
    });
  return n;
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One concept per line (blank lines and surrounding spaces ignored). */
export function readConcepts(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CmError('NOT_FOUND', `cannot read concept list ${file}: ${(e as Error).message}`, {
      context: { file },
      cause: e,
    });
  }
  const concepts = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  if (concepts.length === 0)
    throw new CmError('INVALID_ARGUMENT', `${file}: the concept set is empty`, {
      context: { file },
      hint: 'one concept per line',
    });
  return concepts;
}

/**
 * P for wpmi / soft_wpmi: only its header now; the workers read their rows of the file during the
 * softmax and keep only softmax(a P) (P is needed for nothing else), so P never exists whole in
 * memory and is read in parallel. A float16 P stays float16 in memory (`keepFloat16`: half the
 * bytes, the softmax rebuilt per block of concepts, the same similarity bit for bit). float64 P
 * is read as a matrix (converted), as for other methods.
 */
function readProbeScores(file: string, method: SimilarityMethod, slots: number): Matrix | SoftmaxInput {
  const role = 'probe scores P (images x concepts)';
  const h = readNpyHeader(file);
  const likelihood = method === 'soft_wpmi' || method === 'wpmi';
  if (!likelihood || h.shape.length !== 2 || (h.dtype !== 'float32' && h.dtype !== 'float16'))
    return readFloatMatrix(file, role, { shared: true });
  return softmaxInputFromNpy(file, { slots, keepFloat16: h.dtype === 'float16' });
}

async function runDissect(flags: DissectFlags): Promise<void> {
  const startUp = process.uptime();
  const method = flags.method as SimilarityMethod;
  if (!SIMILARITY_METHODS.includes(method)) {
    throw new CmError('INVALID_ARGUMENT', `unknown --method ${flags.method}`, {
      hint: `use one of ${SIMILARITY_METHODS.join(', ')}`,
    });
  }
  if (flags.labelsOut && !flags.concepts)
    throw new CmError('INVALID_ARGUMENT', '--labels-out needs --concepts (the concept names)');
  const params: SimilarityParams = {
    topK: numberFlag('top-k', flags.topK),
    a: numberFlag('a', flags.a),
    lambda: numberFlag('lambda', flags.lambda),
    minProb: numberFlag('min-prob', flags.minProb),
    pStart: numberFlag('p-start', flags.pStart),
    pEnd: numberFlag('p-end', flags.pEnd),
    minNorm: numberFlag('min-norm', flags.minNorm),
    p: numberFlag('power', flags.power),
    topFraction: numberFlag('top-fraction', flags.topFraction),
    scaleP: numberFlag('scale-p', flags.scaleP),
    seed: numberFlag('seed', flags.seed),
  };
  const workers = numberFlag('workers', flags.workers);
  const clock = performance.now();
  const lap = (): number => {
    const now = performance.now();
    const seconds = (now - lapStart) / 1000;
    lapStart = now;
    return seconds;
  };
  let lapStart = clock;
  // shared: the workers read P and Q in place, without the copy toShared would make
  const P = readProbeScores(flags.probeScores, method, workers ?? Math.max(1, availableParallelism()));
  const readP = lap();
  const Q = readFloatMatrix(flags.activations, 'activations Q (images x neurons)', { shared: true });
  const readQ = lap();
  const concepts = flags.concepts ? readConcepts(flags.concepts) : undefined;
  if (concepts && concepts.length !== P.cols) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${flags.concepts} lists ${concepts.length} concepts but ${flags.probeScores} has ${P.cols} columns`,
      {
        context: { concepts: concepts.length, pCols: P.cols },
      },
    );
  }
  // Without --workers, the similarity stays in this thread for small inputs and uses a pool of
  // one worker per core for big ones.
  const pool = workers === undefined ? undefined : new DissectPool({ workers });
  try {
    lap();
    const { sim, likelihoodOffset, stages } = await computeSimilarityDetailed(method, P, Q, params, pool);
    const seconds = lap();
    writeNpy(flags.out, sim.data, [sim.rows, sim.cols]);
    const write = lap();
    process.stdout.write(
      `${method}: ${Q.cols} neurons x ${P.cols} concepts from ${P.rows} images in ${seconds.toFixed(2)} s -> ${flags.out}\n`,
    );
    if (flags.timings) {
      const f = (x: number): string => x.toFixed(3);
      process.stdout.write(
        `stages (s): start-up ${f(startUp)}, read P ${f(readP)}, read Q ${f(readQ)}, softmax ${f(stages.softmax)}, ` +
          `top-k ${f(stages.topk)} (at once), kernel ${f(stages.kernel - Math.max(stages.softmax, stages.topk))}, ` +
          `similarity ${f(seconds)}, write ${f(write)}\n`,
      );
    }
    if (concepts && flags.labelsOut) {
      // near-ties broken by the neuron's own likelihood, as dissectLayer (and the service) does
      const { indices, scores } = topConceptsPerNeuron(sim, 5, likelihoodOffset);
      const k = Math.min(5, sim.cols);
      const lines = ['neuron,concept,score,top5'];
      for (let n = 0; n < sim.rows; n++) {
        const top = Array.from(indices.subarray(n * k, (n + 1) * k), (j) => concepts[j]);
        lines.push([String(n), csvField(top[0]), String(scores[n * k]), csvField(top.join(';'))].join(','));
      }
      writeFileSync(flags.labelsOut, `${lines.join('\n')}\n`);
      process.stdout.write(`labels of ${sim.rows} neurons -> ${flags.labelsOut}\n`);
    }
  } finally {
    await pool?.close();
  }
}

export function registerDissect(program: Command): void {
  program
    .command('dissect')
    .description(
      'CLIP-Dissect similarity of a layer (N x S) from probe scores P (D x S) and activations Q (D x N), .npy in and out',
    )
    .requiredOption('--probe-scores <file>', 'P: images x concepts, .npy float32/float16/float64')
    .requiredOption('--activations <file>', 'Q: images x neurons (pooled), .npy float32/float64')
    .requiredOption('--out <file>', 'where to write the N x S similarity (.npy float32)')
    .option('--method <name>', `similarity: ${SIMILARITY_METHODS.join(', ')}`, 'soft_wpmi')
    .option('--top-k <n>', '(soft_)wpmi: top activating images per neuron (default 100 / 28)')
    .option('--a <x>', '(soft_)wpmi: softmax scale (default 10 / 2)')
    .option('--lambda <x>', '(soft_)wpmi: weight of the concept prior (default 1 / 0.6)')
    .option('--min-prob <x>', '(soft_)wpmi: probability floor (default 1e-7)')
    .option('--p-start <x>', 'soft_wpmi: weight of the top image (default 0.998)')
    .option('--p-end <x>', 'soft_wpmi: weight of the last image (default 0.97)')
    .option('--min-norm <x>', 'cos_cubed: norm floor (default 1e-3)')
    .option('--power <x>', 'rank_reorder: error exponent p (default 3)')
    .option('--top-fraction <x>', 'rank_reorder: share of top images used (default 0.05)')
    .option('--scale-p <x>', 'rank_reorder: exponent of the mean-score normaliser (default 0.5)')
    .option('--seed <n>', 'rank_reorder: seed of the baseline permutations (default 0)')
    .option('--concepts <file>', 'concept names, one per line (S lines)')
    .option('--labels-out <file>', 'write labels.csv: neuron, concept, score, top5 (needs --concepts)')
    .option('--workers <n>', 'worker threads (default: one per core)')
    .option(
      '--timings',
      'print the seconds of each stage (start-up, reading, softmax, top-k, kernel, writing)',
    )
    .action((flags: DissectFlags) => runDissect(flags));
}
