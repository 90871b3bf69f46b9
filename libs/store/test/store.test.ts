import { join } from 'node:path';
import { freePort } from '@cm/core';
import { toLabelsColumnsRecord, validateWireRecord, type LabelsColumnsRecord } from '@cm/contracts';
import {
  alertsSql,
  appendRows,
  emptyRows,
  checkpointsSql,
  featuresFor,
  layerMetricsSql,
  MIGRATIONS,
  neuronLabelsSql,
  openStore,
  parseServerVersion,
  runsOverviewSql,
  sqlString,
  storeTargetFromString,
  type LabelFormat,
  type Migration,
  type Store,
} from '../src';
import {
  alertRecord,
  checkpointRecord,
  labelsRecord,
  NASTY_LAYER,
  NASTY_RUN_ID,
  runRecord,
  sampleRun,
} from './fixtures';
import { realBackends } from './backends';

/**
 * The same suite on clickhouse-server 18.16 (apt, real process) and on embedded chDB (ClickHouse 26):
 * migrations, every record kind in and out, de-duplication, escaping.
 */
const { dir, backends } = realBackends('cm-store-', 'cm_test');

describe.each(backends)('store on %s', (_name, makeTarget) => {
  let store: Store;

  beforeAll(async () => {
    store = await openStore(await makeTarget());
  }, 90_000);
  afterAll(async () => {
    await store?.close();
  });

  it('switches storage extras by server version', () => {
    const v = parseServerVersion(store.serverVersion);
    expect(store.features).toEqual(featuresFor(v));
    if (v.major === 18) expect(store.features).toEqual({ ttl: false, codecs: false, lowCardinality: false });
    if (v.major >= 21) expect(store.features).toEqual({ ttl: true, codecs: true, lowCardinality: true });
  });

  it('applies migrations once and records their versions', async () => {
    expect(await store.migrate()).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await store.migrate()).toEqual([]);
    const extra = {
      version: 999,
      name: 'test-only',
      statements: () => [`CREATE TABLE IF NOT EXISTS cm_test.t999 (a UInt8) ENGINE = MergeTree ORDER BY a`],
    };
    expect(await store.migrate([...MIGRATIONS, extra])).toEqual([999]);
    expect(await store.migrate([...MIGRATIONS, extra])).toEqual([]);
    expect(await store.appliedMigrations()).toEqual([...MIGRATIONS.map((m) => m.version), 999]);
    const tables = await store.query<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = 'cm_test' ORDER BY name`,
    );
    expect(tables.map((t) => t.name)).toEqual([
      'alerts',
      'checkpoints',
      'concepts',
      'label_thinning',
      'layer_metrics',
      'neuron_labels',
      'runs',
      'schema_migrations',
      't999',
    ]);
  });

  it('recreates a table dropped by hand at the next migration, with every column', async () => {
    const columns = async (): Promise<string[]> =>
      (
        await store.query<{ name: string }>(
          `SELECT name FROM system.columns WHERE database = 'cm_test' AND table = 'runs' ORDER BY name`,
        )
      ).map((r) => r.name);
    await store.migrate();
    const before = await columns();
    const ledger = await store.appliedMigrations();
    // what `DROP TABLE runs` by hand does (the store has no public statement method: a test reaches in)
    await (store as unknown as { command(sql: string): Promise<void> }).command('DROP TABLE cm_test.runs');
    expect(await store.missingTables()).toEqual(['runs']);
    expect(await store.migrate()).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await store.missingTables()).toEqual([]);
    expect(await columns()).toEqual(before);
    // the ledger still has one row per version
    expect(await store.appliedMigrations()).toEqual(ledger);
    expect(await store.migrate()).toEqual([]);
  });

  it('round-trips strings through sqlString', async () => {
    for (const s of [NASTY_RUN_ID, "a'b", 'back\\slash', 'tab\there', '\u0000nul', 'emoji 🧠', "\\'"]) {
      const rows = await store.query<{ s: string }>(`SELECT ${sqlString(s)} AS s`);
      expect(rows[0].s).toBe(s);
    }
  });

  it('stores every record kind and reads it back with the shipped queries', async () => {
    const records = sampleRun(NASTY_RUN_ID, 3);
    await store.insertRecords(records);

    const labels = await store.query<Record<string, unknown>>(
      neuronLabelsSql(store.database, { runId: NASTY_RUN_ID }),
    );
    expect(labels).toHaveLength(3 * (4 + 3));
    const first = labels.find(
      (l) => l.layer === NASTY_LAYER && Number(l.step) === 100 && Number(l.neuron) === 2,
    )!;
    const expected = labelsRecord(NASTY_RUN_ID, NASTY_LAYER, 100, 4).labels[2];
    expect(first).toMatchObject({
      run_id: NASTY_RUN_ID,
      concept: expected.concept,
      category: expected.category,
      interpretable: 1,
      dead: 0,
      top_concepts: ['dog', 'cat', 'sky'],
      top_images: [4, 3, 4294967295, 0, 11, 12, 13, 14],
    });
    expect(expected.topImages).toEqual([4, 3, 4294967295, 0, 11, 12, 13, 14]);
    expect(Number(first.score)).toBeCloseTo(expected.score, 5);
    expect(Number(first.x)).toBeCloseTo(1, 5);
    expect(Number(first.y)).toBeCloseTo(-0.5, 5);

    const oneLayer = await store.query(
      neuronLabelsSql(store.database, { runId: NASTY_RUN_ID, layer: 'fc', step: 200 }),
    );
    expect(oneLayer).toHaveLength(3);

    const metrics = await store.query<Record<string, unknown>>(layerMetricsSql(store.database, NASTY_RUN_ID));
    expect(metrics).toHaveLength(6);
    expect(metrics[0]).toMatchObject({
      categories: ['object', 'scene', 'texture'],
      top_concept_names: ['dog', "o'clock"],
      top_concept_counts: [2, 1],
    });

    const checkpoints = await store.query<Record<string, unknown>>(
      checkpointsSql(store.database, NASTY_RUN_ID),
    );
    expect(checkpoints.map((c) => Number(c.step))).toEqual([0, 100, 200]);
    expect(checkpoints[1].metric_names).toEqual(['loss', 'accuracy', 'learningRate']);

    const alerts = await store.query<Record<string, unknown>>(alertsSql(store.database, NASTY_RUN_ID));
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      state: 'firing',
      rule: 'diversity_drop',
      message: "diversity of 'fc' dropped",
    });

    const runs = await store.query<Record<string, unknown>>(
      `SELECT run_id, tags.key AS k, tags.value AS v, layers.name AS ln FROM runs FINAL`,
    );
    expect(runs).toEqual([
      { run_id: NASTY_RUN_ID, k: ['owner', 'seed'], v: ["o'hara", '7'], ln: [NASTY_LAYER, 'fc'] },
    ]);

    // the concept dictionary is filled from label rows under the run's bundle
    const concepts = await store.query<{ concept: string }>(
      `SELECT concept FROM concepts FINAL WHERE bundle_id = 'bundle-1' ORDER BY concept`,
    );
    expect(concepts.map((c) => c.concept)).toEqual(['cat', 'dog', "o'clock", 'stripes\\x']);
  });

  it('keeps each neuron, checkpoint and alert once when records are inserted again', async () => {
    const runId = 'dup-run';
    const records = sampleRun(runId, 2);
    await store.insertRecords(records);
    await store.insertRecords(records); // a redelivery
    await store.insertRecords([labelsRecord(runId, 'fc', 100, 3, '2026-06-01T00:00:00.000Z')]); // recomputed later: newest wins
    const labels = await store.query<Record<string, unknown>>(neuronLabelsSql(store.database, { runId }));
    expect(labels).toHaveLength(2 * (4 + 3));
    const keys = new Set(labels.map((l) => `${l.layer}|${l.step}|${l.neuron}`));
    expect(keys.size).toBe(labels.length);
    const recomputed = labels.filter((l) => l.layer === 'fc' && Number(l.step) === 100);
    expect(recomputed.every((l) => String(l.time).startsWith('2026-06-01'))).toBe(true);
    expect(await store.query(checkpointsSql(store.database, runId))).toHaveLength(2);
    expect(await store.query(alertsSql(store.database, runId))).toHaveLength(1);
    const raw = await store.query<{ n: string | number }>(
      `SELECT count() AS n FROM neuron_labels WHERE run_id = 'dup-run'`,
    );
    expect(Number(raw[0].n)).toBeGreaterThanOrEqual(labels.length); // unmerged duplicates may exist; FINAL hides them
  });

  it('round-trips hostile strings and non-finite floats in neuron label rows (TSV encoding)', async () => {
    const hostile = [
      'tab\there',
      'new\nline',
      'cr\rx',
      'nul\u0000x',
      'back\\slash\\',
      "quote'd",
      '"dq"',
      '[a,b]',
      "\\'",
      'ü🧠',
      '',
      '\\t literal',
      'end\\',
    ];
    const runId = 'hostile\trun\n';
    const layer = "lay\\er\t'1'";
    const record = labelsRecord(runId, layer, 5, hostile.length);
    record.labels.forEach((l, i) => {
      l.concept = hostile[i];
      l.category = hostile[(i + 1) % hostile.length];
      l.topConcepts = [hostile[i], hostile[(i + 2) % hostile.length]];
      l.topScores = [Number.NaN, Number.POSITIVE_INFINITY];
      l.previousConcept = hostile[(i + 4) % hostile.length];
    });
    record.labels[0].score = Number.NaN;
    await store.insertRecords([record]);
    const rows = await store.query<Record<string, unknown>>(neuronLabelsSql(store.database, { runId }));
    expect(rows).toHaveLength(hostile.length);
    rows.forEach((r, i) => {
      expect(r).toMatchObject({
        run_id: runId,
        layer,
        neuron: i,
        concept: hostile[i],
        category: hostile[(i + 1) % hostile.length],
        top_concepts: [hostile[i], hostile[(i + 2) % hostile.length]],
      });
    });
    const previous = await store.query<{ previous_concept: string }>(
      `SELECT previous_concept FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)} ORDER BY neuron`,
    );
    expect(previous.map((r) => r.previous_concept)).toEqual(
      hostile.map((_, i) => hostile[(i + 4) % hostile.length]),
    );
    const special = await store.query<{ s: number; a: number; b: number }>(
      `SELECT isNaN(score) AS s, isNaN(top_scores[1]) AS a, isInfinite(top_scores[2]) AS b FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)} AND neuron = 0`,
    );
    expect(special).toEqual([{ s: 1, a: 1, b: 1 }]);
  });

  it('stores a columnar labels record exactly like its row form, in every label format this store takes', async () => {
    const hostile = ['tab\there', 'new\nline', 'nul\u0000x', 'back\\slash\\', "quote'd", 'ü🧠', '', 'dog'];
    const rowsRecord = labelsRecord('enc-rows', "lay\\er\t'1'", 5, hostile.length);
    rowsRecord.labels.forEach((l, i) => {
      l.concept = hostile[i];
      l.category = hostile[(i + 3) % hostile.length];
      l.topConcepts = [hostile[(i + 1) % hostile.length], 'dog', hostile[i]];
      l.topScores = i === 2 ? [] : [0.123456789, Number.NaN, -Number.POSITIVE_INFINITY];
      l.previousConcept = hostile[(i + 5) % hostile.length];
    });
    rowsRecord.labels[3].x = Number.NaN; // JSON carries it as null in both forms: stored as 0
    const viaJson = <T>(v: T): unknown => JSON.parse(JSON.stringify(v));
    const columnsRecord = validateWireRecord(
      viaJson({ ...toLabelsColumnsRecord(rowsRecord), runId: 'enc-columns' }),
    );
    const formats: LabelFormat[] =
      store.labelFormat === 'RowBinary' ? ['RowBinary', 'TabSeparated'] : ['TabSeparated'];
    expect(store.newRows().labelFormat).toBe(store.labelFormat);
    for (const format of formats) {
      const batch = emptyRows(format);
      appendRows(batch, validateWireRecord(viaJson(rowsRecord)));
      appendRows(batch, { ...(columnsRecord as LabelsColumnsRecord), runId: `enc-columns-${format}` });
      expect(batch.counts.neuronLabels).toBe(2 * hostile.length);
      await store.insertRows(batch);
    }
    // floats as ClickHouse's text (nan/inf do not survive JSON output on every version)
    const columns =
      'layer, step, neuron, concept, category, toString(score) AS score, interpretable, dead, top_concepts, arrayMap(v -> toString(v), top_scores) AS top_scores, toString(x) AS x, toString(y) AS y, time, time_ms, top_images, previous_concept';
    const read = (runId: string): Promise<Record<string, unknown>[]> =>
      store.query(
        `SELECT ${columns} FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)} ORDER BY neuron`,
      );
    const expected = await read('enc-rows');
    expect(expected).toHaveLength(hostile.length);
    expect(expected[0]).toMatchObject({
      concept: hostile[0],
      category: hostile[3],
      top_concepts: [hostile[1], 'dog', hostile[0]],
    });
    expect(expected[2]).toMatchObject({ top_scores: [] });
    expect(expected.map((r) => r.top_images)).toEqual(rowsRecord.labels.map((l) => l.topImages));
    expect(expected.map((r) => r.previous_concept)).toEqual(rowsRecord.labels.map((l) => l.previousConcept));
    // through JSON (the wire) every non-finite float is null: a top score is then stored as nan
    expect(expected[0]).toMatchObject({ top_scores: ['0.12345679', 'nan', 'nan'] });
    expect(Number(expected[3].x)).toBe(0);
    for (const format of formats) expect(await read(`enc-columns-${format}`)).toEqual(expected);
  });

  it("stores '' as the previous concept of rows from producers before the field, in every label format", async () => {
    const formats: LabelFormat[] =
      store.labelFormat === 'RowBinary' ? ['RowBinary', 'TabSeparated'] : ['TabSeparated'];
    const record = labelsRecord('no-previous', 'fc', 1, 3);
    expect(record.labels.every((l) => l.previousConcept === undefined)).toBe(true);
    for (const format of formats) {
      const batch = emptyRows(format);
      appendRows(batch, { ...record, runId: `no-previous-${format}` });
      appendRows(batch, { ...toLabelsColumnsRecord(record), runId: `no-previous-columns-${format}` });
      await store.insertRows(batch);
    }
    const rows = await store.query<{ run_id: string; n: string; blank: string }>(
      `SELECT run_id, count() AS n, countIf(previous_concept = '') AS blank FROM neuron_labels FINAL WHERE run_id LIKE 'no-previous-%' GROUP BY run_id ORDER BY run_id`,
    );
    expect(rows).toHaveLength(2 * formats.length);
    for (const r of rows) expect([Number(r.n), Number(r.blank)]).toEqual([3, 3]);
  });

  it('refuses label rows in a format the store cannot take', async () => {
    if (store.labelFormat === 'RowBinary') return; // a server takes both
    const batch = emptyRows('RowBinary');
    appendRows(batch, labelsRecord('binary-on-chdb', 'fc', 1, 2));
    await expect(store.insertRows(batch)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('reports runs with last step and health', async () => {
    const runId = 'health-run';
    await store.insertRecords([
      runRecord(runId),
      checkpointRecord(runId, 0),
      checkpointRecord(runId, 500),
      alertRecord(runId, 'firing', 500),
    ]);
    let overview = await store.query<Record<string, unknown>>(runsOverviewSql(store.database));
    let row = overview.find((r) => r.run_id === runId)!;
    expect(row).toMatchObject({ status: 'running', health: 'alerting', firing_rules: 'diversity_drop' });
    expect(Number(row.last_step)).toBe(500);
    expect(Number(row.checkpoints)).toBe(2);

    await store.insertRecords([
      alertRecord(runId, 'resolved', 600),
      runRecord(runId, 'completed', '2026-01-02T00:00:00.000Z'),
    ]);
    overview = await store.query<Record<string, unknown>>(runsOverviewSql(store.database));
    row = overview.find((r) => r.run_id === runId)!;
    expect(row).toMatchObject({ status: 'completed', health: 'ok' });
    expect(Number(row.firing_alerts)).toBe(0);
    expect(overview.filter((r) => r.run_id === runId)).toHaveLength(1);
  });

  it('stores non-finite training metrics instead of failing the batch', async () => {
    await store.insertRecords([checkpointRecord('nan-run', 1, Number.NaN)]);
    const rows = await store.query<{ isnan: number }>(
      `SELECT isNaN(metrics.value[indexOf(metrics.name, 'loss')]) AS isnan FROM checkpoints FINAL WHERE run_id = 'nan-run'`,
    );
    expect(rows).toEqual([{ isnan: 1 }]);
  });

  it('returns columns in order and CSV rendered by ClickHouse', async () => {
    const cols = await store.queryColumns(`SELECT 2 AS b, 'x' AS a`);
    expect(cols.columns.map((c) => c.name)).toEqual(['b', 'a']);
    expect(cols.rows).toEqual([[2, 'x']]);
    const csv = await store.queryText(`SELECT 1 AS n, 'a,b' AS s`, 'CSVWithNames');
    expect(csv.trim().split('\n')).toEqual(['"n","s"', '1,"a,b"']);
  });

  it('migrates a version-1 store: adds top_images, old rows read as [], new rows keep their images', async () => {
    const v1 = await openStore({ ...store.target, database: 'cm_v1' });
    try {
      expect(await v1.migrate(MIGRATIONS.filter((m) => m.version === 1))).toEqual([1]);
      // a label row exactly as version 1 wrote it (no top_images column yet), as a test-only migration
      const oldRow: Migration = {
        version: 100,
        name: 'test: a label row written by version 1',
        statements: () => [
          `INSERT INTO cm_v1.neuron_labels (run_id, layer, step, neuron, concept, category, score, interpretable, dead, top_concepts, top_scores, x, y, time, time_ms) VALUES ('old', 'fc', 1, 0, 'dog', 'object', 0.5, 1, 0, ['dog'], [0.5], 0, 0, 1767225600, 1767225600000)`,
        ],
      };
      expect(await v1.migrate([...MIGRATIONS.filter((m) => m.version === 1), oldRow])).toEqual([100]);
      const before = await v1.query<{ name: string }>(
        `SELECT name FROM system.columns WHERE database = 'cm_v1' AND table = 'neuron_labels' AND name = 'top_images'`,
      );
      expect(before).toEqual([]);
      expect(await v1.migrate()).toEqual(MIGRATIONS.map((m) => m.version).filter((v) => v > 1));
      expect(await v1.migrate()).toEqual([]);
      // migration 3: a run's setup goes in and comes back; a run recorded before it reads as ''
      const setup = {
        method: 'soft_wpmi',
        params: '{"topK":100}',
        pooling: 'avg',
        calibration: 'per-concept likelihood null',
        conceptSetHash: 'a'.repeat(64),
        clipModel: '',
        codeVersion: '0.1.0',
      };
      await v1.insertRecords([{ ...runRecord('with-setup'), setup }]);
      const [stored] = await v1.query<Record<string, string>>(
        `SELECT setup_method, setup_params, concept_set_hash, code_version FROM runs FINAL WHERE run_id = 'with-setup'`,
      );
      expect(stored).toEqual({
        setup_method: 'soft_wpmi',
        setup_params: '{"topK":100}',
        concept_set_hash: 'a'.repeat(64),
        code_version: '0.1.0',
      });
      // applied again after an interruption (column there, version not recorded): skipped, no error
      const again = MIGRATIONS.find((m) => m.version === 2)!;
      expect(await v1.migrate([{ ...again, version: 102 }])).toEqual([102]);
      const column = await v1.query<{ type: string }>(
        `SELECT type FROM system.columns WHERE database = 'cm_v1' AND table = 'neuron_labels' AND name = 'top_images'`,
      );
      expect(column).toEqual([{ type: 'Array(UInt32)' }]);
      await v1.insertRecords([labelsRecord('new', 'fc', 2, 2)]);
      const rows = await v1.query<{ run_id: string; neuron: number; top_images: number[] }>(
        `SELECT run_id, neuron, top_images FROM cm_v1.neuron_labels FINAL ORDER BY run_id, neuron`,
      );
      expect(rows).toEqual([
        { run_id: 'new', neuron: 0, top_images: [0, 3, 4294967295, 0, 11, 12, 13, 14] },
        { run_id: 'new', neuron: 1, top_images: [7, 3, 4294967295, 0, 11, 12, 13, 14] },
        { run_id: 'old', neuron: 0, top_images: [] },
      ]);
    } finally {
      await v1.close(); // on chDB both stores share the process' one session, which stays open for `store`
    }
  });

  it('turns a bad query into a clear error', async () => {
    await expect(store.query('SELECT * FROM no_such_table')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});

describe('storeTargetFromString', () => {
  it('reads server URLs and chDB folders', () => {
    expect(storeTargetFromString('http://u:p%40ss@127.0.0.1:8123/?database=x', { database: 'cm' })).toEqual({
      kind: 'server',
      url: 'http://127.0.0.1:8123',
      user: 'u',
      password: 'p@ss',
      database: 'x',
    });
    expect(storeTargetFromString('http://127.0.0.1:8123', { database: 'cm' })).toMatchObject({
      user: 'default',
      password: '',
      database: 'cm',
    });
    expect(storeTargetFromString('.cm/store', { database: 'cm' })).toMatchObject({
      kind: 'chdb',
      database: 'cm',
    });
  });
});

describe('openStore', () => {
  it('says clearly when the server is down', async () => {
    const port = await freePort();
    await expect(
      openStore({
        kind: 'server',
        url: `http://127.0.0.1:${port}`,
        user: 'default',
        password: '',
        database: 'x',
      }),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
  it('refuses a database name that is not an identifier', async () => {
    await expect(
      openStore({ kind: 'chdb', path: join(dir, 'chdb'), database: 'x; DROP' }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
