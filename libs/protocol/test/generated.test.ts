/**
 * The committed generated types are what `npm run protocol:generate` makes of protos/ today, and
 * the check notices a proto changed without regenerating.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTO_PATH, PROTO_ROOT } from '../src';
import { checkGenerated, GENERATED_DIR, generateTypes, listFiles } from '../src/generate';

describe('generated types', () => {
  it('match protos/ (else run npm run protocol:generate)', () => {
    expect(checkGenerated()).toEqual([]);
  }, 60_000);

  it('cover every message and enum of the contract', () => {
    expect(listFiles(GENERATED_DIR)).toEqual(
      expect.arrayContaining([
        'monitor.ts',
        'conceptmonitor/v1/TrainerMessage.ts',
        'conceptmonitor/v1/ActivationChunk.ts',
        'conceptmonitor/v1/CheckpointAck.ts',
        'conceptmonitor/v1/DType.ts',
        'conceptmonitor/v1/HealthResponse.ts',
      ]),
    );
  });

  describe('drift check (it can fail)', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'cm-protos-'));
      cpSync(PROTO_ROOT, join(dir, 'protos'), { recursive: true });
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('finds nothing for an unchanged copy of the proto in another folder', () => {
      expect(checkGenerated(GENERATED_DIR, { protoRoot: join(dir, 'protos') })).toEqual([]);
    }, 60_000);

    it('names the files a new field changes', () => {
      const file = join(dir, 'protos', PROTO_PATH);
      const proto = readFileSync(file, 'utf8');
      const changed = proto.replace(
        /(message RunAccepted \{[^}]*)\}/,
        '$1  uint32 added_for_the_test = 99;\n}',
      );
      expect(changed).not.toBe(proto);
      writeFileSync(file, changed);
      expect(checkGenerated(GENERATED_DIR, { protoRoot: join(dir, 'protos') })).toEqual([
        'conceptmonitor/v1/RunAccepted.ts',
      ]);
      const out = join(dir, 'out');
      generateTypes(out, { protoRoot: join(dir, 'protos') });
      expect(readFileSync(join(out, 'conceptmonitor/v1/RunAccepted.ts'), 'utf8')).toContain(
        "'addedForTheTest': (number);",
      );
    }, 60_000);

    it('names the file of a new message', () => {
      const file = join(dir, 'protos', PROTO_PATH);
      writeFileSync(
        file,
        readFileSync(file, 'utf8') + '\nmessage AddedForTheTest {\n  string note = 1;\n}\n',
      );
      expect(checkGenerated(GENERATED_DIR, { protoRoot: join(dir, 'protos') })).toEqual(
        expect.arrayContaining(['conceptmonitor/v1/AddedForTheTest.ts', 'monitor.ts']),
      );
    }, 60_000);

    it('reports a proto that does not parse as a clear error', () => {
      const file = join(dir, 'protos', PROTO_PATH);
      writeFileSync(file, 'syntax = "proto3";\nmessage Broken {');
      expect(() => checkGenerated(GENERATED_DIR, { protoRoot: join(dir, 'protos') })).toThrow(
        /proto-loader-gen-types failed on conceptmonitor\/v1\/monitor\.proto/,
      );
    }, 60_000);
  });
});
