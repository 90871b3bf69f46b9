/**
 * Writes Grafana's provisioning files to deploy/grafana from the TypeScript definitions.
 *   npm run dashboards:generate            # regenerate
 *   npm run dashboards:generate -- --check # exit 1 when the committed files drifted
 */
import { checkGenerated, GRAFANA_DIR, writeGenerated } from '../generate';

if (process.argv.includes('--check')) {
  const drifted = checkGenerated();
  if (drifted.length) {
    process.stderr.write(
      `deploy/grafana is out of date: ${drifted.join(', ')} (run npm run dashboards:generate)\n`,
    );
    process.exit(1);
  }
  process.stdout.write('deploy/grafana matches the generator\n');
} else {
  const written = writeGenerated();
  process.stdout.write(`wrote ${written.length} files under ${GRAFANA_DIR}\n`);
}
