/** `geneprune report`: one self-contained HTML page of figures and tables for finished run directories. */
import type { Command } from 'commander';
import { report } from '../index.js';
import { deviceOption, parseDevice, parseIntFlag, parseThreadsFlag, threadsOption } from './options.js';

interface ReportFlags {
  out: string;
  bench?: boolean;
  benchRuns: string;
  force?: boolean;
  device: string;
  threads?: string;
  json?: boolean;
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description(
      'Write one self-contained HTML report (SVG figures, method table) of finished run directories.',
    )
    .argument('<run-dir...>', 'run directories of heads or weights runs, one or many')
    .option('--out <file>', 'the HTML file to write', 'report.html')
    .option('--force', 'replace an existing --out, when it is a report written before (never another file)')
    .option(
      '--bench',
      "measure each head run's speed first (as geneprune bench) and store it as its bench.json",
    )
    .option('--bench-runs <n>', 'timed runs per model when measuring (median reported)', '5')
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option('--json', 'print where the report went and what it holds as one JSON object')
    .addHelpText(
      'after',
      `
Figures: quality vs sparsity of every individual (coloured by generation), sparsity and fitness per
generation, the Pareto front (nsga), quality vs speedup for every run (measured where the run directory
holds bench.json or --bench measured it, else the parameter ratio, labelled as a proxy), the head mask
per layer, per-layer weight sparsity; and a table of methods with their data, forward passes and time.
The page needs no network or script to be viewed. Example:
  geneprune report runs/ga25 runs/nsga runs/abl25 runs/wanda50 --out report.html
  geneprune report runs/ga25 --bench --out ga25.html`,
    )
    .action(async (dirs: string[], flags: ReportFlags) => {
      const r = await report({
        runs: dirs,
        out: flags.out,
        bench: flags.bench,
        benchRuns: parseIntFlag('--bench-runs', flags.benchRuns),
        force: flags.force,
        device: parseDevice(flags.device),
        threads: flags.threads ? parseThreadsFlag(flags.threads) : undefined,
        onStatus: (line) => process.stderr.write(`${line}\n`),
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      const lines = [
        `report  ${r.out}`,
        `runs    ${r.runs.length}; ${r.figures.length} figures`,
        ...(r.measured.length ? [`bench   measured ${r.measured.join(', ')}`] : []),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
