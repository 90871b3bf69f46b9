import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '@cm/core';
import { isAlive, readPid } from '@cm/stack';
import { cmWith } from './run-cm';

const cm = cmWith();

describe('cm (subprocess)', () => {
  it('lists its commands with one line each', async () => {
    const r = await cm(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: cm/);
    expect(r.stdout).toMatch(/^\s+stack\s+\S/m);
  });

  it('prints one clear line and exits non-zero on a configuration error', async () => {
    const r = await cm(['stack', 'status'], { CM_NATS_PORT: 'not-a-port' });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^cm: error: invalid configuration: CM_NATS_PORT/);
  });

  it('adds the stack trace with --verbose', async () => {
    const r = await cm(['--verbose', 'stack', 'status'], { CM_NATS_PORT: 'not-a-port' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/at .*config\.ts/);
  });

  it('rejects an unknown command', async () => {
    const r = await cm(['no-such-command']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown command/);
  });

  describe('stack up | status | down', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-clistack-'));
    const env: NodeJS.ProcessEnv = {
      CM_STACK_DIR: dir,
      CM_HOME: dir,
      CM_BUNDLE_DIR: join(dir, 'bundles'),
      CM_CHDB_PATH: join(dir, 'store'),
    };
    beforeAll(async () => {
      for (const k of [
        'CM_NATS_PORT',
        'CM_NATS_MONITOR_PORT',
        'CM_CLICKHOUSE_HTTP_PORT',
        'CM_CLICKHOUSE_TCP_PORT',
        'CM_SERVICE_HEALTH_PORT',
        'CM_RECORDER_HEALTH_PORT',
      ]) {
        env[k] = String(await freePort());
      }
      env.CM_GRPC_LISTEN = `127.0.0.1:${await freePort()}`;
    });
    afterAll(async () => {
      await cm(['stack', 'down'], env);
      rmSync(dir, { recursive: true, force: true });
    });

    it('starts, reports and stops every service, leaving no process behind', async () => {
      const up = await cm(['stack', 'up'], env);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      expect(up.stdout).toMatch(/stack up: started nats, clickhouse, concept-service, recorder \(/);
      const names = ['nats', 'clickhouse', 'concept-service', 'recorder'];
      const pids = names.map((n) => readPid(dir, n)!);
      expect(pids.every((p) => Number.isInteger(p) && p > 0)).toBe(true);
      expect(pids.every(isAlive)).toBe(true);

      const status = await cm(['stack', 'status'], env);
      expect(status.code).toBe(0);
      for (const n of names) expect(status.stdout).toMatch(new RegExp(`^${n}\\s+\\d+\\s+healthy`, 'm'));

      // one service dies: `stack up` starts it alone and keeps the healthy ones (same pids)
      const [natsPid, chPid, servicePid, recorderPid] = pids;
      process.kill(recorderPid, 'SIGKILL');
      await waitFor(async () => !isAlive(recorderPid), 5000, 50);
      const mend = await cm(['stack', 'up'], env);
      expect(mend.code).toBe(0);
      expect(mend.stdout).toMatch(/stack up: started recorder; kept nats, clickhouse, concept-service \(/);
      const newRecorder = readPid(dir, 'recorder')!;
      expect(newRecorder).not.toBe(recorderPid);
      expect(isAlive(newRecorder)).toBe(true);
      expect(names.slice(0, 3).map((n) => readPid(dir, n))).toEqual([natsPid, chPid, servicePid]);

      // restart one by name: only its pid changes
      const restart = await cm(['stack', 'restart', 'concept-service'], env);
      expect(restart.code).toBe(0);
      expect(restart.stdout).toMatch(/concept-service: restarted, healthy/);
      expect(readPid(dir, 'concept-service')).not.toBe(servicePid);
      expect(isAlive(servicePid)).toBe(false);
      expect([readPid(dir, 'nats'), readPid(dir, 'clickhouse'), readPid(dir, 'recorder')]).toEqual([
        natsPid,
        chPid,
        newRecorder,
      ]);
      const unknown = await cm(['stack', 'restart', 'grafana'], env);
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toMatch(
        /no service named grafana.*one of: nats, clickhouse, concept-service, recorder/s,
      );
      const livePids = names.map((n) => readPid(dir, n)!);

      const down = await cm(['stack', 'down'], env);
      expect(down.code).toBe(0);
      expect(down.stdout).toMatch(/stopped:/);
      expect([...pids, ...livePids].filter(isAlive)).toEqual([]);
      expect((await cm(['stack', 'status'], env)).stdout).toMatch(/stack is down/);
    }, 180_000);
  });
});
