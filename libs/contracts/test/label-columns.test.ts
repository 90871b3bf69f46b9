import {
  fromLabelColumns,
  isLabelsColumnsRecord,
  RecordValidationError,
  toLabelColumns,
  toLabelsColumnsRecord,
  validateLabelsColumnsRecord,
  validateWireRecord,
  type LabelsRecord,
} from '../src';

const record = (): LabelsRecord => ({
  kind: 'labels',
  runId: 'r1',
  layer: 'conv1',
  step: 3,
  part: 0,
  parts: 1,
  time: '2026-01-01T00:00:00.000Z',
  labels: [
    {
      neuron: 0,
      concept: 'dog',
      category: 'object',
      score: 0.5,
      interpretable: true,
      dead: false,
      topConcepts: ['dog', 'cat'],
      topScores: [0.5, 0.25],
      topImages: [4, 0, 2],
      x: 1,
      y: -1,
    },
    {
      neuron: 1,
      concept: "o'clock\t",
      category: 'scene',
      score: 0.1,
      interpretable: false,
      dead: true,
      topConcepts: [],
      topScores: [0.75],
      topImages: [],
      x: 0.5,
      y: 2,
    },
    {
      neuron: 7,
      concept: 'dog',
      category: 'object',
      score: 0,
      interpretable: false,
      dead: false,
      topConcepts: ['cat', 'sky', 'dog'],
      topScores: [],
      topImages: [4294967295, 1],
      x: 0,
      y: 0,
    },
  ],
});

describe('columnar labels', () => {
  it('round-trips rows through columns and JSON, each string stored once', () => {
    const r = record();
    const wire = JSON.parse(JSON.stringify(toLabelsColumnsRecord(r))) as unknown;
    const decoded = validateWireRecord(wire);
    expect(isLabelsColumnsRecord(decoded)).toBe(true);
    if (!isLabelsColumnsRecord(decoded)) return;
    expect(decoded.columns.strings).toEqual(['dog', 'object', 'cat', "o'clock\t", 'scene', 'sky']);
    expect(fromLabelColumns(decoded.columns)).toEqual(r.labels);
    const { labels: _labels, ...header } = r;
    const { columns: _columns, ...decodedHeader } = decoded;
    expect(decodedHeader).toEqual(header);
  });

  it("round-trips the previous checkpoint's concepts; rows without them come back without", () => {
    const r = record();
    r.labels.forEach((l, i) => (l.previousConcept = ['', 'dog', 'grid'][i]));
    const decoded = validateWireRecord(JSON.parse(JSON.stringify(toLabelsColumnsRecord(r))));
    if (!isLabelsColumnsRecord(decoded)) throw new Error('not columnar');
    expect(decoded.columns.previousConcept).toHaveLength(3);
    expect(fromLabelColumns(decoded.columns)).toEqual(r.labels);
    expect(toLabelColumns(record().labels).previousConcept).toBeUndefined();
    const bad = JSON.parse(JSON.stringify(toLabelsColumnsRecord(r))) as {
      columns: { previousConcept: number[] };
    };
    bad.columns.previousConcept[2] = 99;
    expect(() => validateWireRecord(bad)).toThrow(/previousConcept\[2\] is not an index/);
    const rows = JSON.parse(JSON.stringify(r)) as { labels: Record<string, unknown>[] };
    rows.labels[0].previousConcept = 7;
    expect(() => validateWireRecord(rows)).toThrow(/previousConcept is not a string/);
  });

  it('keeps accepting the row form', () => {
    const decoded = validateWireRecord(JSON.parse(JSON.stringify(record())));
    expect(isLabelsColumnsRecord(decoded)).toBe(false);
    expect(decoded).toEqual(record());
  });

  it('carries non-finite floats as null, read back as the row form stores them', () => {
    const r = record();
    r.labels[0].topScores = [Number.NaN];
    r.labels[0].x = Number.POSITIVE_INFINITY;
    const c = validateLabelsColumnsRecord(JSON.parse(JSON.stringify(toLabelsColumnsRecord(r)))).columns;
    expect(c.topScores[0]).toBeNull();
    const rows = fromLabelColumns(c);
    expect(rows[0].topScores[0]).toBeNaN();
    expect(rows[0].x).toBe(0);
  });

  const wire = (): Record<string, unknown> & { columns: Record<string, unknown[]> } =>
    JSON.parse(JSON.stringify(toLabelsColumnsRecord(record()))) as Record<string, unknown> & {
      columns: Record<string, unknown[]>;
    };
  const broken: [string, (w: ReturnType<typeof wire>) => void, RegExp][] = [
    [
      'no columns object',
      (w) => (w.columns = null as unknown as Record<string, unknown[]>),
      /columns missing/,
    ],
    [
      'a column that is not an array',
      (w) => (w.columns.score = 'x' as unknown as unknown[]),
      /score is not an array/,
    ],
    ['a short column', (w) => w.columns.x.pop(), /x has 2 entries, expected 3/],
    ['a concept index out of range', (w) => (w.columns.concept[1] = 99), /concept\[1\] is not an index/],
    [
      'a top concept index out of range',
      (w) => (w.columns.topConcepts[0] = -1),
      /topConcepts\[0\] is not an index/,
    ],
    [
      'counts that do not add up',
      (w) => (w.columns.topConceptCount[0] = 3),
      /topConcepts has 5 entries, expected 6/,
    ],
    [
      'a score that is not a finite number',
      (w) => (w.columns.score[0] = null),
      /score\[0\] is not a finite number/,
    ],
    ['a flag that is not 0/1', (w) => (w.columns.dead[0] = true), /dead\[0\] is not 0 or 1/],
    ['a string that is not a string', (w) => (w.columns.strings[0] = 5), /strings\[0\] is not a string/],
    ['a negative neuron', (w) => (w.columns.neuron[0] = -1), /neuron\[0\] is not a neuron index/],
    ['a top score that is text', (w) => (w.columns.topScores[0] = '0.5'), /topScores\[0\] is not a number/],
    ['a bad step', (w) => (w.step = -1), /layer or step/],
    ['a bad time', (w) => (w.time = 'yesterday'), /time is not an ISO date/],
    ['both forms at once', (w) => (w.labels = []), /both labels and columns/],
  ];
  it.each(broken)('refuses %s', (_name, breakIt, message) => {
    const w = wire();
    breakIt(w);
    expect(() => validateWireRecord(w)).toThrow(RecordValidationError);
    expect(() => validateWireRecord(w)).toThrow(message);
  });

  it('encodes an empty record', () => {
    expect(toLabelColumns([])).toMatchObject({ strings: [], neuron: [], topConcepts: [] });
  });
});
