import { compareSetups, runSetupsSql, SETUP_FIELDS } from '../src';

const base = {
  setup_method: 'soft_wpmi',
  setup_params: '{"lambda":1}',
  setup_pooling: 'avg',
  setup_calibration: 'per-concept likelihood null',
  concept_set_hash: 'aa',
  clip_model: 'ViT-B/16',
};

describe('compareSetups', () => {
  it('finds nothing for equal setups', () => {
    expect(compareSetups(base, { ...base })).toEqual([]);
  });

  it('names each differing field, with both values where they are readable', () => {
    const d = compareSetups(base, {
      ...base,
      setup_method: 'wpmi',
      setup_params: '{}',
      concept_set_hash: 'bb',
      clip_model: '',
    });
    expect(d.map((x) => x.column)).toEqual([
      'setup_method',
      'setup_params',
      'concept_set_hash',
      'clip_model',
    ]);
    expect(d.map((x) => x.text)).toEqual([
      'method soft_wpmi vs wpmi',
      'parameters',
      'concept set',
      'CLIP model ViT-B/16 vs -',
    ]);
    expect(d[0]).toMatchObject({ label: 'method', a: 'soft_wpmi', b: 'wpmi' });
  });

  it('says nothing when a run is missing or predates the setup columns', () => {
    expect(compareSetups(base, undefined)).toEqual([]);
    expect(compareSetups({ ...base, setup_method: '' }, { ...base, setup_method: 'wpmi' })).toEqual([]);
  });

  it('asks for every setup column of both runs, escaped', () => {
    const sql = runSetupsSql({ runA: "a'b", runB: 'c' });
    for (const f of SETUP_FIELDS) expect(sql).toContain(f.column);
    expect(sql).toContain("'a\\'b'");
    expect(sql).toMatch(/FROM runs FINAL/);
  });
});
