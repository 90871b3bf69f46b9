import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CmError, notFound } from '@cm/core';

/**
 * Checkpoints on disk, one folder each:
 *   model.json + weights.bin   the tfjs Layers format (loadable by tf.loadLayersModel('file://...')
 *                              under tfjs-node, and by `loadModelFolder` here on any backend)
 *   optimizer.json/.bin        optimizer slots (Adam moments) so a resumed run continues exactly
 *   extra.json/.bin            paradigm tensors (lottery masks and rewind weights)
 *   trainer.json               step, run id, paradigm, data and model description (TrainerState)
 * Written into a temporary folder and renamed, so a crash never leaves a half checkpoint.
 */
/** A tensor with a name, as optimizers' getWeights() returns them. */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

export interface TrainerState {
  version: 1;
  runId: string;
  step: number;
  paradigm: string;
  modelName: string;
  blocks: string[];
  classNames: string[];
  /** Free-form description of data, options and paradigm state (JSON). */
  meta: Record<string, unknown>;
}

export interface SavedCheckpoint {
  model: tf.LayersModel;
  state: TrainerState;
  optimizerWeights?: NamedTensor[];
  extra?: NamedTensor[];
}

function writeTensors(dir: string, base: string, tensors: NamedTensor[]): Promise<void> {
  return tf.io.encodeWeights(tensors).then(({ data, specs }) => {
    writeFileSync(join(dir, `${base}.bin`), Buffer.from(data));
    writeFileSync(join(dir, `${base}.json`), JSON.stringify(specs));
  });
}

function readTensors(dir: string, base: string): NamedTensor[] | undefined {
  if (!existsSync(join(dir, `${base}.json`))) return undefined;
  const specs = JSON.parse(readFileSync(join(dir, `${base}.json`), 'utf8')) as tf.io.WeightsManifestEntry[];
  const bin = readFileSync(join(dir, `${base}.bin`));
  const map = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength), specs);
  return Object.entries(map).map(([name, tensor]) => ({ name, tensor }));
}

export async function saveCheckpoint(
  dir: string,
  model: tf.LayersModel,
  state: TrainerState,
  optimizerWeights?: NamedTensor[],
  extra?: NamedTensor[],
): Promise<string> {
  const target = resolve(dir);
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = artifacts.weightData as ArrayBuffer;
      writeFileSync(join(tmp, 'weights.bin'), Buffer.from(weightData));
      const modelJson = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: null,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
      };
      writeFileSync(join(tmp, 'model.json'), JSON.stringify(modelJson));
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          weightDataBytes: weightData.byteLength,
        },
      };
    }),
  );
  if (optimizerWeights?.length) await writeTensors(tmp, 'optimizer', optimizerWeights);
  if (extra?.length) await writeTensors(tmp, 'extra', extra);
  writeFileSync(join(tmp, 'trainer.json'), JSON.stringify(state, null, 2));
  mkdirSync(dirname(target), { recursive: true });
  rmSync(target, { recursive: true, force: true });
  renameSync(tmp, target);
  return target;
}

/** Load a model saved by saveCheckpoint (or any tfjs layers-model folder with one weights file group). */
export async function loadModelFolder(dir: string): Promise<tf.LayersModel> {
  const modelPath = join(dir, 'model.json');
  if (!existsSync(modelPath))
    throw notFound(
      `no model.json in ${dir}`,
      { dir },
      'pass a checkpoint folder written by cm train (…/checkpoints/<run>/latest)',
    );
  let json: {
    modelTopology: object;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  try {
    json = JSON.parse(readFileSync(modelPath, 'utf8'));
  } catch (e) {
    throw new CmError('CORRUPT', `${modelPath} is not valid JSON`, {
      context: { file: modelPath },
      cause: e,
    });
  }
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(readFileSync(join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: specs,
      weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
    }),
  );
}

export async function loadCheckpoint(dir: string): Promise<SavedCheckpoint> {
  const statePath = join(dir, 'trainer.json');
  if (!existsSync(statePath))
    throw notFound(`no trainer.json in ${dir}: not a checkpoint written by the trainer`, { dir });
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as TrainerState;
  if (state.version !== 1)
    throw new CmError('CORRUPT', `${statePath} has version ${String(state.version)}, expected 1`, {
      context: { file: statePath },
    });
  const model = await loadModelFolder(dir);
  return { model, state, optimizerWeights: readTensors(dir, 'optimizer'), extra: readTensors(dir, 'extra') };
}
