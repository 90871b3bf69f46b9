/**
 * The seam between a training loop and Concept-Monitor. A trainer codes against `Monitor`;
 * libs/monitor-client implements it over gRPC (to a concept service), libs/engine implements it
 * in-process (all-in-one mode, the demo). Same calls, same results, either way.
 */
export interface MonitoredLayer {
  name: string;
  /** Number of neurons (channels of a conv layer, units of a dense layer). */
  width: number;
  kind: 'conv' | 'dense';
}

export interface RunSpec {
  runId: string;
  model: string;
  /** standard | finetune | adversarial | lottery (free text for other trainers). */
  paradigm: string;
  /** Id of the probe bundle whose images the activations were computed on. */
  bundleId: string;
  layers: MonitoredLayer[];
  tags: Record<string, string>;
}

/** Activations of one layer on the whole probe set. */
export interface LayerActivations {
  layer: string;
  /**
   * [D, N] already pooled, or raw [D, H, W, C] (NHWC) which the service pools with `pooling`.
   */
  shape: number[];
  data: Float32Array;
  pooling?: 'avg' | 'max';
}

export interface CheckpointData {
  step: number;
  layers: LayerActivations[];
  /** Training metrics: loss, accuracy, learningRate, ... */
  metrics: Record<string, number>;
}

/**
 * The monitored layers of one randomly initialised copy of the model (fresh weights, same
 * architecture), on the probe set: one of the K initialisations the learned-concept figure compares
 * every checkpoint with (docs/dissect.md, "Learned concepts"). Not a training step.
 */
export interface RandomInitBaseline {
  /** Which initialisation this is, 0..inits-1. */
  index: number;
  /** K, how many the client sends for this architecture (at most MAX_BASELINE_INITS). */
  inits: number;
  layers: LayerActivations[];
}

/** Random initialisations a baseline may have: K dissections of every layer are kept per architecture. */
export const MAX_BASELINE_INITS = 32;

/** What the monitor learned from a checkpoint (per layer summary + any alerts), once it is durable. */
export interface CheckpointResult {
  step: number;
  layers: {
    layer: string;
    /** Learned-concept figure (share beyond random init); null until the run has a baseline. */
    learnedFraction?: number | null;
    /** Association figure: share interpretable under the shuffle null. */
    interpretableFraction: number;
    distinctConceptShare: number;
    labelEntropy: number;
    topConcepts: { concept: string; count: number }[];
  }[];
  alerts: { layer: string; rule: string; state: 'firing' | 'resolved'; message: string }[];
}

/** How a run is started: `resume` continues a run already known under its id (else refused). */
export interface StartOptions {
  resume?: boolean;
}

export interface Monitor {
  startRun(spec: RunSpec, options?: StartOptions): Promise<void>;
  /**
   * Resolves when the checkpoint's results are durable (JetStream ack or store insert), or, under a
   * drop policy with the service down, with `undefined` after counting the drop.
   */
  sendCheckpoint(checkpoint: CheckpointData): Promise<CheckpointResult | undefined>;
  endRun(status: 'completed' | 'failed'): Promise<void>;
  /**
   * Whether the current run's architecture still lacks a random-init baseline on its bundle (none
   * cached): then the trainer sends K of them (sendBaseline) before its first checkpoint. Absent:
   * the monitor takes no baseline, and learned figures stay null.
   */
  baselineWanted?(): Promise<boolean>;
  /** One random initialisation of the run's model (RandomInitBaseline); resolves once it is dissected. */
  sendBaseline?(baseline: RandomInitBaseline): Promise<void>;
  close(): Promise<void>;
  /**
   * For a monitor that may answer `undefined` yet deliver the checkpoint later (the gRPC client's
   * policy 'spool'): the steps of the current (or last) run that were dropped after all, and those
   * the service refused once delivered. An `undefined` answer for a step in neither list was
   * delivered late. Absent: `undefined` means dropped.
   */
  undeliveredSteps?(): { dropped: readonly number[]; failed: readonly { step: number; error: string }[] };
}
