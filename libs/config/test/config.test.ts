import { loadConfig, ENV } from '../src';
import { CmError } from '@cm/core';

describe('loadConfig', () => {
  it('has defaults for local use', () => {
    const c = loadConfig({});
    expect(c.nats.url).toBe('nats://127.0.0.1:4222');
    expect(c.clickhouse.database).toBe('concept_monitor');
    expect(c.grpc.maxMessageBytes).toBe(4 * 1024 * 1024);
  });

  it('keeps local state under CM_HOME unless a path of its own is given', () => {
    expect(loadConfig({})).toMatchObject({
      home: '.cm',
      chdbPath: '.cm/store',
      bundles: { dir: '.cm/bundles' },
      stack: { dir: '.cm/stack' },
    });
    expect(loadConfig({ CM_HOME: '/tmp/h' })).toMatchObject({
      chdbPath: '/tmp/h/store',
      bundles: { dir: '/tmp/h/bundles' },
      stack: { dir: '/tmp/h/stack' },
    });
    expect(loadConfig({ CM_HOME: '/tmp/h', CM_CHDB_PATH: '/data/store' })).toMatchObject({
      chdbPath: '/data/store',
      bundles: { dir: '/tmp/h/bundles' },
    });
  });

  it('reads and coerces environment variables', () => {
    const c = loadConfig({
      CM_NATS_PORT: '14222',
      CM_CLICKHOUSE_URL: 'http://127.0.0.1:18123',
      CM_ALERT_HYSTERESIS: '3',
    });
    expect(c.stack.natsPort).toBe(14222);
    expect(c.clickhouse.url).toBe('http://127.0.0.1:18123');
    expect(c.alerts.hysteresis).toBe(3);
  });

  it('lets flag overrides win over the environment', () => {
    const c = loadConfig({ CM_GRPC_LISTEN: '127.0.0.1:1' }, { 'grpc.listen': '127.0.0.1:2' });
    expect(c.grpc.listen).toBe('127.0.0.1:2');
  });

  it('names every bad variable in one error', () => {
    let err: unknown;
    try {
      loadConfig({ CM_NATS_PORT: 'abc', CM_CLICKHOUSE_URL: 'not a url', CM_CLICKHOUSE_DATABASE: 'x;drop' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CmError);
    const msg = (err as CmError).message;
    expect(msg).toContain('CM_NATS_PORT');
    expect(msg).toContain('CM_CLICKHOUSE_URL');
    expect(msg).toContain('CM_CLICKHOUSE_DATABASE');
    expect((err as CmError).code).toBe('CONFIG');
  });

  it('reads the local ClickHouse cluster layout and refuses an empty one', () => {
    expect(loadConfig({}).stack).toMatchObject({
      clickhouseShards: 1,
      clickhouseReplicas: 1,
      clickhouseInterserverPort: 9009,
      zookeeperPort: 2181,
    });
    expect(
      loadConfig({
        CM_STACK_CLICKHOUSE_SHARDS: '2',
        CM_STACK_CLICKHOUSE_REPLICAS: '2',
        CM_ZOOKEEPER_PORT: '12181',
      }).stack,
    ).toMatchObject({ clickhouseShards: 2, clickhouseReplicas: 2, zookeeperPort: 12181 });
    expect(() => loadConfig({ CM_STACK_CLICKHOUSE_SHARDS: '0' })).toThrow(/CM_STACK_CLICKHOUSE_SHARDS/);
    expect(() => loadConfig({ CM_CLICKHOUSE_INTERSERVER_PORT: 'x' })).toThrow(
      /CM_CLICKHOUSE_INTERSERVER_PORT/,
    );
  });

  it('retention (CM_LABELS_*): off by default, validated, env names in errors', () => {
    expect(loadConfig({}).retention).toEqual({
      fullDays: 0,
      fullCheckpoints: 0,
      keepEvery: 0,
      intervalMinutes: 60,
    });
    expect(
      loadConfig({
        CM_LABELS_FULL_DAYS: '30',
        CM_LABELS_KEEP_EVERY: '10',
        CM_RETENTION_INTERVAL_MINUTES: '15',
      }).retention,
    ).toEqual({ fullDays: 30, fullCheckpoints: 0, keepEvery: 10, intervalMinutes: 15 });
    expect(() => loadConfig({ CM_LABELS_KEEP_EVERY: '10' })).toThrow(
      /CM_LABELS_KEEP_EVERY: thinning needs a bound that keeps the newest labels/,
    );
    expect(() => loadConfig({ CM_LABELS_KEEP_EVERY: '2.5', CM_LABELS_FULL_DAYS: '1' })).toThrow(
      /CM_LABELS_KEEP_EVERY/,
    );
    expect(() => loadConfig({ CM_LABELS_FULL_DAYS: '-1' })).toThrow(/CM_LABELS_FULL_DAYS/);
  });

  it('trainer (CM_TRAINER_DIVERSITY_REG): off by default, a weight from 0 to 100', () => {
    expect(loadConfig({}).trainer).toEqual({ diversityReg: 0 });
    expect(loadConfig({ CM_TRAINER_DIVERSITY_REG: '0.25' }).trainer.diversityReg).toBe(0.25);
    expect(() => loadConfig({ CM_TRAINER_DIVERSITY_REG: '-1' })).toThrow(/CM_TRAINER_DIVERSITY_REG/);
    expect(() => loadConfig({ CM_TRAINER_DIVERSITY_REG: 'x' })).toThrow(/CM_TRAINER_DIVERSITY_REG/);
  });

  it('maps every variable to a real setting', () => {
    for (const path of Object.values(ENV)) {
      const keys = path.split('.');
      let node: unknown = loadConfig({});
      for (const k of keys.slice(0, -1)) node = (node as Record<string, unknown>)[k];
      expect(Object.keys(node as object).concat(['user', 'password', 'webhookUrl'])).toContain(
        keys[keys.length - 1],
      );
    }
  });
});
