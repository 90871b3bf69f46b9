/**
 * Writes the generated TypeScript types of protos/ into libs/protocol/src/generated.
 *   npm run protocol:generate            # regenerate (run after every change of protos/)
 *   npm run protocol:generate -- --check # exit 1 when the committed files drifted
 */
import { checkGenerated, generateTypes, GENERATED_DIR } from '../generate';

if (process.argv.includes('--check')) {
  const drifted = checkGenerated();
  if (drifted.length) {
    process.stderr.write(
      `libs/protocol/src/generated is out of date with protos/: ${drifted.join(', ')} (run npm run protocol:generate)\n`,
    );
    process.exit(1);
  }
  process.stdout.write('libs/protocol/src/generated matches protos/\n');
} else {
  const written = generateTypes(GENERATED_DIR);
  process.stdout.write(`wrote ${written.length} files under ${GENERATED_DIR}\n`);
}
