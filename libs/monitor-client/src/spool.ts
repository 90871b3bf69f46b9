/**
 * A bounded folder of checkpoints waiting for the concept service (delivery policy 'spool'); the
 * TypeScript twin of libs/monitor-client-py/concept_monitor/spool.py.
 *
 * Each checkpoint is one file `<seq>-<step>.ckpt` holding its TrainerMessages serialized as
 * protobuf, each as a 4-byte little-endian length and the bytes. A file is written under a
 * temporary name and renamed, so a reader never sees half a checkpoint; files are read back oldest
 * first (by sequence number), which keeps the steps in order. The bound counts file bytes.
 * Besides checkpoints (step >= 0) it holds the run's RunEnd (step -1) and the random
 * initialisations of the learned-concept baseline (step -2 - index), which the client writes before
 * the first checkpoint, so they go out first.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CmError } from '@cm/core';
import { serviceDefinition, type TrainerMessage } from '@cm/protocol';

interface SpoolFile {
  path: string;
  step: number;
  bytes: number;
  /** Activation bytes it takes in the client's memory buffer once read back. */
  payload: number;
}

function codec(): { encode(m: TrainerMessage): Buffer; decode(b: Buffer): TrainerMessage } {
  const method = serviceDefinition().Monitor;
  return {
    encode: (m) => method.requestSerialize(m),
    decode: (b) => method.requestDeserialize(b) as TrainerMessage,
  };
}

export class Spool {
  private readonly files: SpoolFile[] = [];
  private seq = 0;
  private used = 0;
  private readonly codec = codec();

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    if (!(maxBytes > 0)) throw new CmError('INVALID_ARGUMENT', `spoolMaxBytes must be > 0, got ${maxBytes}`);
    mkdirSync(dir, { recursive: true });
    const leftovers = readdirSync(dir).filter((f) => f.endsWith('.ckpt'));
    if (leftovers.length > 0) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `spool folder ${dir} already holds ${leftovers.length} checkpoint file(s) of another run`,
        { context: { spool: dir }, hint: 'give each run its own spool folder, or empty it' },
      );
    }
  }

  /** Files waiting (a spooled RunEnd included). */
  get length(): number {
    return this.files.length;
  }

  /** Bytes on disk. */
  get bytes(): number {
    return this.used;
  }

  /** Spooled checkpoints (not counting a spooled RunEnd, step -1). */
  checkpoints(): number {
    return this.files.filter((f) => f.step >= 0).length;
  }

  /** Steps of the spooled checkpoints, oldest first. */
  steps(): number[] {
    return this.files.filter((f) => f.step >= 0).map((f) => f.step);
  }

  /** The file contents of one checkpoint (see the header). */
  encode(messages: readonly TrainerMessage[]): Buffer {
    const parts: Buffer[] = [];
    for (const m of messages) {
      const body = this.codec.encode(m);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(body.length, 0);
      parts.push(len, body);
    }
    return Buffer.concat(parts);
  }

  fits(bytes: number): boolean {
    return this.used + bytes <= this.maxBytes;
  }

  /** Write one checkpoint (or the RunEnd, step -1, or a random initialisation, step -2 - index) behind the others. */
  put(step: number, data: Buffer, payload: number): void {
    this.seq++;
    const path = join(this.dir, `${String(this.seq).padStart(12, '0')}-${step}.ckpt`);
    writeFileSync(`${path}.tmp`, data);
    renameSync(`${path}.tmp`, path);
    this.files.push({ path, step, bytes: data.length, payload });
    this.used += data.length;
  }

  /** The oldest entry (step, payload bytes), or undefined when empty. */
  peek(): { step: number; payload: number } | undefined {
    return this.files[0];
  }

  /** The oldest entry, read back; its file is removed. */
  pop(): { step: number; payload: number; messages: TrainerMessage[] } {
    const file = this.files.shift();
    if (!file) throw new CmError('INTERNAL', `spool ${this.dir} is empty`);
    const data = readFileSync(file.path);
    const messages: TrainerMessage[] = [];
    for (let pos = 0; pos < data.length;) {
      const n = data.readUInt32LE(pos);
      pos += 4;
      messages.push(this.codec.decode(data.subarray(pos, pos + n)));
      pos += n;
    }
    rmSync(file.path, { force: true });
    this.used -= file.bytes;
    return { step: file.step, payload: file.payload, messages };
  }

  /** Remove what is left (and the folder when empty); return how many checkpoints were still spooled. */
  close(): number {
    const left = this.checkpoints();
    for (const f of this.files.splice(0)) rmSync(f.path, { force: true });
    this.used = 0;
    try {
      rmdirSync(this.dir);
    } catch {
      // not empty (files of someone else) or already gone: leave it
    }
    return left;
  }
}
