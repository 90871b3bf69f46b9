import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findReaderEndpoint, notAReadStatement, readerAdvertFile } from '../src';

describe('reader endpoint (pure parts)', () => {
  it('lets reads through and names what it refuses', () => {
    for (const sql of [
      'SELECT 1',
      '  select * from runs',
      'WITH 1 AS x SELECT x',
      '-- a comment\nSELECT 1',
      '/* block */ SHOW TABLES',
      'DESCRIBE TABLE runs',
      'desc runs',
      'EXISTS TABLE runs',
      'EXPLAIN SELECT 1',
    ])
      expect([sql, notAReadStatement(sql)]).toEqual([sql, undefined]);
    expect(notAReadStatement('DROP TABLE runs')).toMatch(/^DROP is not a read/);
    expect(notAReadStatement('/* SELECT */ INSERT INTO runs VALUES')).toMatch(/^INSERT is not a read/);
    expect(notAReadStatement('-- SELECT\nALTER TABLE runs DELETE WHERE 1')).toMatch(/^ALTER is not a read/);
    expect(notAReadStatement('   ')).toBe('the statement is empty');
    expect(notAReadStatement("'; DROP TABLE runs")).toBe('the statement is empty');
  });

  it('finds a live advertisement next to the folder and ignores a stale, broken or missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-reader-'));
    try {
      const store = join(dir, 'store');
      expect(readerAdvertFile(store)).toBe(join(dir, 'store.reader.json'));
      expect(findReaderEndpoint(store)).toBeUndefined();
      const advert = {
        pid: process.pid,
        port: 1234,
        token: 't',
        writer: 'cm demo',
        path: store,
        database: 'db',
      };
      writeFileSync(readerAdvertFile(store), JSON.stringify(advert));
      expect(findReaderEndpoint(store)).toMatchObject({ pid: process.pid, port: 1234 });
      writeFileSync(readerAdvertFile(store), JSON.stringify({ ...advert, pid: 2 ** 22 + 12345 })); // no such process
      expect(findReaderEndpoint(store)).toBeUndefined();
      writeFileSync(readerAdvertFile(store), '{"pid": 1, "por');
      expect(findReaderEndpoint(store)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
