import { loadConfig } from '@cm/config';
import { buildTrainerProgram, type TrainerFlags } from '../src/main';

/** The trainer service's --diversity-reg: a flag whose default is configuration (CM_TRAINER_DIVERSITY_REG). */
function parse(argv: string[], env: NodeJS.ProcessEnv = {}): TrainerFlags {
  let flags: TrainerFlags | undefined;
  const program = buildTrainerProgram(async (f) => {
    flags = f;
  }, loadConfig(env)).exitOverride();
  program.parse(argv, { from: 'user' });
  return flags!;
}

describe('trainer service --diversity-reg', () => {
  it('defaults to CM_TRAINER_DIVERSITY_REG (0: off) and the flag wins', () => {
    expect(parse([]).diversityReg).toBe(0);
    expect(parse([], { CM_TRAINER_DIVERSITY_REG: '0.5' }).diversityReg).toBe(0.5);
    expect(parse(['--diversity-reg', '2'], { CM_TRAINER_DIVERSITY_REG: '0.5' }).diversityReg).toBe(2);
  });

  it('refuses a negative weight in the environment, naming the variable', () => {
    expect(() => loadConfig({ CM_TRAINER_DIVERSITY_REG: '-1' })).toThrow(/CM_TRAINER_DIVERSITY_REG/);
  });
});
