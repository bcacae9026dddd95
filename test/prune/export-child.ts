/**
 * A process that exports a tiny random model, for the kill tests of export-safety.test.ts (which set
 * GENEPRUNE_FAULT to SIGKILL it at a chosen step): `export-child.ts OUT LAYERS [--force]`.
 */
import { GenepruneError } from '../../src/errors.js';
import { exportModel } from '../../src/prune/export.js';
import { tinySpec } from './export-safety-model.js';

const [out, layers, force] = process.argv.slice(2);
try {
  await exportModel({
    spec: tinySpec(Number(layers)),
    out,
    format: 'hf',
    force: force === '--force',
    onStatus: (line) => process.stderr.write(`${line}\n`),
  });
} catch (e) {
  process.stderr.write(`geneprune: ${e instanceof GenepruneError ? e.oneLine() : String(e)}\n`);
  process.exit(1);
}
