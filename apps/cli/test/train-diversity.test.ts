/**
 * `cm train --diversity-reg` (subprocess, fresh CM_HOME, unmonitored): the regulariser trains and
 * the summary names its weight and term; a bad weight is refused before anything is trained.
 */
import { join } from 'node:path';
import { cmWith, testFolder, tinyTrainFlags } from './run-cm';

const home = testFolder('cm-divreg-');
const cm = cmWith({ CM_HOME: join(home, 'home'), CM_LOG_LEVEL: 'warn', CM_DISSECT_WORKERS: '1' }, 180_000);

const tiny = tinyTrainFlags(4, 2);

describe('cm train --diversity-reg', () => {
  it('trains with the regulariser and reports it in the summary', async () => {
    const r = await cm(['train', ...tiny, '--no-monitor', '--diversity-reg', '0.5', '--run-id', 'divreg']);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).toMatch(
      /diversity regulariser weight 0\.5 \(term 0\.\d{3} over the last window\)/,
    );
  }, 200_000);

  it('refuses a negative weight', async () => {
    const r = await cm(['train', ...tiny, '--no-monitor', '--diversity-reg', '-1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--diversity-reg must be a number from 0 to 100/);
  }, 60_000);
});
