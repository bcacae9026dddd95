/**
 * The labelled data of a classification run (`--metric accuracy|macro-f1` on a model with a classification
 * head): `--calib` is the labelled JSONL file the search scores candidates on (its first `--calib-items` items,
 * default all), `--eval` the one the report quotes. Like text data they are kept apart: never the same file,
 * never an item (text and pair) in both.
 */
import { fileError, flagError } from '../errors.js';
import { readClassificationData } from '../metrics/classification.js';
import { type PreparedClassification, prepareClassification } from '../metrics/classify.js';
import type { ModelSpec } from '../model/spec.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { realPathOf, sha256File } from '../util/fs.js';

export interface RunLabelled {
  prepared: PreparedClassification;
  source: string;
  sha256: string;
}

/** The model a classification metric needs, and the label names its files are read with. */
export function classifierLabels(spec: ModelSpec, metric: string): readonly string[] {
  const labels = spec.config.classifier?.labels;
  if (!labels) {
    throw fileError(
      spec.source,
      `--metric ${metric} needs a sequence-classification model (config.json architectures *ForSequenceClassification); this ${spec.config.modelType} model has no classification head`,
    );
  }
  return labels;
}

export async function readLabelled(
  path: string,
  tokenizer: Tokenizer,
  spec: ModelSpec,
  metric: string,
  onStatus?: (line: string) => void,
): Promise<RunLabelled> {
  const data = await readClassificationData(path, classifierLabels(spec, metric));
  const prepared = prepareClassification(data, tokenizer, spec);
  if (prepared.truncated > 0) {
    onStatus?.(
      `warning: ${prepared.truncated} of ${prepared.items.length} items of ${path} are longer than the model's ${spec.config.maxPositions} positions and were truncated`,
    );
  }
  return { prepared, source: path, sha256: await sha256File(path) };
}

/** Refuses evaluation items that are the calibration file or share an item (text and pair). */
export async function refuseLabelledOverlap(calib: RunLabelled, evalData: RunLabelled): Promise<void> {
  if ((await realPathOf(calib.source)) === (await realPathOf(evalData.source))) {
    throw flagError(
      '--eval',
      `${evalData.source} is also the calibration file (--calib): reports must quote unseen items`,
    );
  }
  const key = (it: { text: string; textPair?: string }) => JSON.stringify([it.text, it.textPair ?? null]);
  const seen = new Set(calib.prepared.data.items.map(key));
  const shared = evalData.prepared.data.items.find((it) => seen.has(key(it)));
  if (shared) {
    throw fileError(
      evalData.source,
      `line ${shared.line}: the item is also in the calibration file ${calib.source}: reports must quote unseen items`,
    );
  }
}

/** What config.json and result.json record about a labelled file. */
export function labelledRecord(l: RunLabelled, items: number) {
  return {
    source: l.source,
    sha256: l.sha256,
    items,
    fileItems: l.prepared.items.length,
    truncated: l.prepared.truncated,
    labels: [...l.prepared.data.labels],
  };
}
