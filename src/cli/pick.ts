/** `geneprune pick`: a head-mask file from an NSGA-II run's front (spaces/heads/pick.ts). */
import type { Command } from 'commander';
import { flagError, parsePick, pickHeadMask } from '../index.js';

interface PickFlags {
  pick?: string;
  out?: string;
  json?: boolean;
}

export function registerPick(program: Command): void {
  program
    .command('pick')
    .description("Write a head-mask file for a point of a finished NSGA-II run's Pareto front (front.json).")
    .argument('<run-dir>', 'the NSGA-II run directory (geneprune heads --method nsga)')
    .option(
      '--pick <which>',
      "sparsity=S: the run's own rule at target S (the best front point removing round(S × heads), else the nearest size); or N: front.json's point N, from 0",
    )
    .option('--out <file>', 'the head-mask file to write (refused when it exists)')
    .option('--json', 'print what was picked as one JSON object')
    .addHelpText(
      'after',
      `
The file is a normal head-mask file for eval, generate, bench and export --mask. The point the run picked
itself gives its mask.json unchanged; another point has its calibration score but no evaluation score
(geneprune eval --mask scores it). Examples:
  geneprune pick runs/nsga --pick sparsity=0.5 --out nsga50.json
  geneprune pick runs/nsga --pick 3 --out point3.json`,
    )
    .action(async (dir: string, flags: PickFlags) => {
      if (flags.pick === undefined) throw flagError('--pick', 'required: sparsity=S or a front index');
      if (flags.out === undefined) throw flagError('--out', 'required: the head-mask file to write');
      const r = await pickHeadMask(dir, parsePick(flags.pick), flags.out);
      const p = r.pick;
      const summary = {
        out: r.out,
        frontIndex: p.index,
        removed: p.removed,
        genes: r.genes,
        quality: p.point.quality,
        atTarget: p.atTarget,
        runsOwn: r.runsOwn,
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        return;
      }
      const lines = [
        `mask     ${r.out}`,
        `point    ${p.index} of front.json: ${p.removed}/${r.genes} heads removed, calibration quality ${p.point.quality.toFixed(4)}${r.runsOwn ? " (the run's own pick: its mask.json)" : ''}`,
        ...(p.atTarget
          ? []
          : [`WARNING  no front point removes ${p.targetRemoved}/${r.genes} heads; picked the nearest size`]),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
