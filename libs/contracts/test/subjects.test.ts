import {
  encodeToken,
  decodeToken,
  subjectFor,
  parseSubject,
  validateRecord,
  RecordValidationError,
} from '../src';

describe('subjects', () => {
  it('encodes run ids into one safe token and back', () => {
    for (const id of ['run-1', 'a.b*c>d e', 'ünïcødé/run', '', "x'; DROP TABLE runs"]) {
      const t = encodeToken(id);
      expect(t).toMatch(/^[A-Za-z0-9_~-]+$/);
      expect(decodeToken(t)).toBe(id);
    }
  });
  it('builds and parses subjects', () => {
    const s = subjectFor('labels', 'my.run');
    expect(s).toBe('cm.v1.labels.my~2erun');
    expect(parseSubject(s)).toEqual({ kind: 'labels', runId: 'my.run' });
    expect(parseSubject('other.v1.labels.x')).toBeUndefined();
    expect(parseSubject('cm.v1.nope.x')).toBeUndefined();
  });
  it('rejects malformed records with the reason', () => {
    expect(() => validateRecord({ kind: 'labels', runId: 'r', time: 'nope' })).toThrow(RecordValidationError);
    expect(() => validateRecord({ kind: 'zzz', runId: 'r', time: new Date().toISOString() })).toThrow(
      /unknown kind/,
    );
    const ok = {
      kind: 'checkpoint',
      runId: 'r',
      step: 3,
      metrics: { loss: 1 },
      time: new Date().toISOString(),
    };
    expect(validateRecord(ok)).toBe(ok);
  });
});
