/** The geneprune command line: a thin client of the library. Errors become one line and a non-zero exit. */
import { Command, CommanderError } from 'commander';
import { GenepruneError } from '../index.js';
import { registerBench } from './bench.js';
import { registerDashboard } from './dashboard.js';
import { registerEval } from './eval.js';
import { registerExport } from './export.js';
import { registerGenerate } from './generate.js';
import { registerHeads } from './heads.js';
import { registerReport } from './htmlreport.js';
import { registerPick } from './pick.js';
import { registerStructured } from './structured.js';
import { registerWeights } from './weights.js';
import { registerWorker } from './worker.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('geneprune')
    .description(
      'Compress transformer language models with genetic algorithms: evaluate, search masks, prune, export.',
    )
    .version('0.1.0')
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`geneprune: ${str.trim().replace(/^error: /, '')} (see --help)\n`),
    })
    .addHelpText(
      'after',
      `
Models: a llama2.c checkpoint (.bin, tokenizer beside it), a Hugging Face folder (config.json,
*.safetensors, tokenizer.json), or hf:OWNER/REPO[/PATH]. Without --model the default is stories260K,
looked up in $GENEPRUNE_MODELS, then the cache ($GENEPRUNE_CACHE or ~/.cache/geneprune), then the hub.`,
    );
  registerEval(program);
  registerGenerate(program);
  registerHeads(program);
  registerPick(program);
  registerWeights(program);
  registerStructured(program);
  registerExport(program);
  registerBench(program);
  registerReport(program);
  registerDashboard(program);
  registerWorker(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has already printed its message; help and version exit 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof GenepruneError) {
      process.stderr.write(`geneprune: ${e.oneLine()}\n`);
      return e.kind === 'flag' ? 2 : 1;
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`geneprune: internal error: ${msg.split('\n')[0]}\n`);
    if (process.env.GENEPRUNE_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
