import type { Command } from 'commander';
import {
  EXPORT_FORMATS,
  type ExportDtype,
  type ExportFormat,
  exportModel,
  flagError,
  type HfLayout,
} from '../index.js';
import {
  deviceOption,
  memoryBudgetOption,
  modelOption,
  parseByteSize,
  parseDevice,
  parseIntFlag,
  parseThreadsFlag,
  threadsOption,
  tokenizerOption,
} from './options.js';

interface ExportFlags {
  model?: string;
  tokenizer?: string;
  mask?: string;
  structured?: string;
  weightMask?: string;
  recovered?: string;
  recover?: boolean;
  calib?: string;
  calibTokens?: string;
  device: string;
  threads?: string;
  out?: string;
  format: string;
  hfLayout?: string;
  dtype?: string;
  force?: boolean;
  json?: boolean;
  memoryBudget?: string;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description(
      'Remove the heads a mask removes (or the heads, MLP channels and blocks a structured plan removes), zero the weights a weight mask prunes, and write the model for transformers.js and Hugging Face.',
    )
    .addOption(modelOption())
    .addOption(tokenizerOption())
    .option(
      '--mask <file>',
      'head-mask file from `geneprune heads` (mask.json); without it the model is exported whole',
    )
    .option(
      '--structured <file>',
      'structured plan file from a structured search (heads, MLP channels, skipped blocks): removed physically (compact) or zeroed (--hf-layout padded); not with --mask',
    )
    .option(
      '--weight-mask <file>',
      'weight-mask file from `geneprune weights`: masked weights are written as zeros (combines with --mask)',
    )
    .option(
      '--recovered <file>',
      'recovered weights, written in place of the originals: of a `weights --recover` run (with its --weight-mask), a `heads --recover` run (with its --mask) or a `structured --recover` run (with its --structured plan)',
    )
    .option(
      '--recover',
      'refit o after the --mask heads are removed, now, on --calib (as `heads --recover` does), and write that',
    )
    .option('--calib <path>', 'calibration data for --recover')
    .option('--calib-tokens <n>', 'calibration tokens --recover reads (default 8192)')
    .option('--out <dir>', 'output folder (required; must be empty or absent unless --force)')
    .option('--format <name>', `${EXPORT_FORMATS.join(' | ')}`, 'all')
    .option(
      '--hf-layout <layout>',
      'how model.safetensors holds removed heads: compact (dropped: smaller and faster; read by geneprune, transformers.js, and Python transformers with trust_remote_code=True for decoders through the modeling_geneprune.py it ships, or 4.x through pruned_heads for BERT-family encoders) or padded (original shapes, removed heads zeroed: any transformers version loads it with the stock class, no smaller, no speed-up)',
      'compact',
    )
    .option(
      '--dtype <type>',
      "storage dtype of the exported model.safetensors: fp32, fp16 or bf16 (default: the checkpoint's own, so bf16 stays bf16); not the compute precision (eval/heads/generate/bench --dtype)",
    )
    .option('--force', 'replace a non-empty --out')
    .addOption(deviceOption())
    .addOption(threadsOption())
    .addOption(memoryBudgetOption())
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `
transformersjs writes config.json, tokenizer files and onnx/model.onnx (KV cache, per-layer head counts);
an encoder-decoder (T5) gets onnx/encoder_model.onnx and onnx/decoder_model_merged.onnx instead, plus
generation_config.json. hf writes config.json and model.safetensors; all writes both into one folder. A pruned
decoder's compact folder also carries modeling_geneprune.py (auto_map in config.json): Python transformers
loads it with AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True). A T5 loads in stock
transformers only with --hf-layout padded. The summary says which loaders read the folder written. A llama2.c tokenizer.bin is converted to an
equivalent tokenizer.json. The folder appears only when complete.

Example:
  geneprune export --mask runs/heads-25/mask.json --out exported/stories260K-pruned
  geneprune export --mask runs/heads-25/mask.json --recover --calib ../shared/data/tinystories/calib \\
      --out exported/stories260K-pruned-recovered
  geneprune export --structured runs/structured-2x/plan.json --out exported/stories260K-structured`,
    )
    .action(async (flags: ExportFlags) => {
      if (!flags.out) throw flagError('--out', 'required: the folder to write');
      const result = await exportModel({
        model: flags.model,
        tokenizer: flags.tokenizer,
        mask: flags.mask,
        structured: flags.structured,
        weightMask: flags.weightMask,
        recovered: flags.recovered,
        recover: flags.recover,
        calib: flags.calib,
        calibTokens: flags.calibTokens ? parseIntFlag('--calib-tokens', flags.calibTokens) : undefined,
        device: parseDevice(flags.device),
        threads: flags.threads ? parseThreadsFlag(flags.threads) : undefined,
        out: flags.out,
        format: flags.format as ExportFormat,
        hfLayout: flags.hfLayout as HfLayout,
        dtype: flags.dtype as ExportDtype | undefined,
        force: flags.force,
        memoryBudget: flags.memoryBudget ? parseByteSize('--memory-budget', flags.memoryBudget) : undefined,
        onStatus: flags.json ? undefined : (line) => process.stderr.write(`${line}\n`),
        onNote: (line) => process.stderr.write(`note: ${line}\n`),
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      const lines = [`exported     ${result.out}`, `files        ${result.files.join(', ')}`];
      if (result.loaders) {
        // Which loaders read the folder's layout, so nobody has to find out by a size-mismatch error.
        lines.push(`loaded by    (${result.loaders.layout} layout) ${result.loaders.readers.join('; ')}`);
      }
      if (result.recovery) {
        lines.push(
          `recovered    o refitted on ${result.recovery.tokens} tokens of ${result.recovery.calibration}`,
        );
      }
      const s = result.summary;
      if (s) {
        // Several stacks (encoder-decoders): one line each, its name padded like the labels.
        const heads = s.stacks
          ? s.stacks.map(
              (st) => `${`${st.name} heads`.padEnd(13)} ${st.kept.join(' ')} (of ${st.before.join(' ')})`,
            )
          : [
              `query heads  ${s.keptQueryHeads.join(' ')} (of ${s.queryHeadsBefore.join(' ')})`,
              `KV heads     ${s.keptKvHeads.join(' ')} (of ${s.kvHeadsBefore.join(' ')})`,
            ];
        lines.push(...heads);
        if ('keptWidths' in s) {
          // A structured plan: MLP widths, skipped blocks and the FLOP ratio beside the heads.
          const layers = (v: number[]) => (v.length ? v.join(' ') : 'none');
          lines.push(
            `MLP widths   ${s.keptWidths.join(' ')} (of ${s.widthsBefore.join(' ')})`,
            `skipped      attention in layers ${layers(s.skippedAttention)}; MLP in layers ${layers(s.skippedMlp)}`,
          );
        }
        lines.push(
          `parameters   ${s.parametersAfter} (of ${s.parametersBefore}, ${((100 * s.parametersAfter) / s.parametersBefore).toFixed(1)} %)`,
        );
        if ('flopsRatio' in s) {
          lines.push(
            `FLOPs        ${(100 * s.flopsRatio).toFixed(1)} % of the dense model's per token (forward over ${s.contextLength} tokens)`,
          );
        }
      }
      const w = result.weightSparsity;
      if (w) {
        const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
        lines.push(
          `sparsity     ${pct(w.prunable.sparsity)} of ${w.prunable.weights} prunable weights, ${pct(w.overall.sparsity)} of all parameters (zeros counted in the written files)`,
          ...w.layers.map(
            (l) => `  layer ${String(l.layer).padEnd(5)}${pct(l.sparsity)} (${l.pruned} of ${l.weights})`,
          ),
        );
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
