import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cmWith } from './run-cm';

/**
 * `cm demo`, the README's main job, as a user runs it (subprocess) on a fresh CM_HOME, shrunk to
 * 20 steps and 120 probe images: it must train, monitor into the embedded store under that home,
 * print the readout (interpretable shares, own-class labels, the untrained-network comparison) and
 * leave a store that `cm runs` reads.
 */
const home = mkdtempSync(join(tmpdir(), 'cm-demo-'));

const cm = cmWith({ CM_HOME: home, CM_LOG_LEVEL: 'warn' }, 240_000);

afterAll(() => rmSync(home, { recursive: true, force: true }));

describe('cm demo (subprocess, fresh CM_HOME)', () => {
  it('trains monitored into the home, prints the readout and the next commands, and the run is in the store', async () => {
    const r = await cm([
      'demo',
      '--steps',
      '20',
      '--every',
      '10',
      '--count',
      '240',
      '--probe-images',
      '120',
      '--run-id',
      'demo-test',
    ]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Concept-Monitor demo \(standard\) finished in \d+ s/);
    expect(r.stdout).toMatch(/run demo-test \(standard\) completed: 20 steps/);
    for (const layer of ['conv1', 'conv2', 'conv3', 'logits']) {
      expect(r.stdout).toMatch(
        new RegExp(
          `^ +${layer} +learned +\\d+% \\(step 0\\) -> +\\d+% \\(step 20\\) +association +\\d+% -> +\\d+%$`,
          'm',
        ),
      );
    }
    expect(r.stdout).toMatch(/logit neurons labelled with their own class: \d+%/);
    expect(r.stdout).toMatch(
      /learned concepts \(interpretable beyond random init\), first -> last checkpoint/,
    );
    expect(r.stdout).toMatch(/npx cm sql "SELECT .* run_id = 'demo-test'/);
    // Everything local went under the fresh home.
    for (const sub of ['store', 'bundles', join('checkpoints', 'demo-test')])
      expect(existsSync(join(home, sub))).toBe(true);

    const runs = await cm(['runs', '--json']);
    expect(runs.code).toBe(0);
    const demo = (JSON.parse(runs.stdout) as Record<string, unknown>[]).find((x) => x.run_id === 'demo-test');
    expect(demo).toMatchObject({ paradigm: 'standard', status: 'completed' });
    expect(Number(demo?.last_step)).toBe(20);
  }, 300_000);
});
