/**
 * geneprune's library API. Every command of the CLI is one call here, with typed options and results:
 * `evaluate` (`evaluateBleu`, `evaluateChoices`, `evaluateLabels`), `generate`, `searchHeads` / `resumeHeadSearch`, `pruneWeights` / `resumeWeightPrune`,
 * `exportModel`, `bench`, `report`. The CLI imports nothing
 * but this module. Lower-level building blocks (checkpoints, graphs, the engine, metrics) follow.
 */

// The commands.
export {
  type BenchLatencyPrediction,
  type BenchModelReport,
  type BenchOptions,
  type BenchReport,
  bench,
} from './api/bench.js';
export { type EvaluateBleuOptions, type EvaluateBleuResult, evaluateBleu } from './api/bleu.js';
export {
  type EvaluateChoicesOptions,
  type EvaluateChoicesResult,
  evaluateChoices,
} from './api/choices.js';
export type { ModelInput, RuntimeOptions } from './api/common.js';
export { type DashboardRunOptions, dashboard } from './api/dashboard.js';
export { type EvaluateOptions, type EvaluateResult, evaluate } from './api/evaluate.js';
export {
  EXPORT_DTYPES,
  EXPORT_FORMATS,
  type ExportDtype,
  type ExportFormat,
  type ExportOptions,
  type ExportResult,
  exportModel,
  HF_LAYOUTS,
  type HfLayout,
  type HfLoaders,
} from './api/export.js';
export { type GenerateOptions, type GenerateResult, generate } from './api/generate.js';
export {
  type GivenSetting,
  HEAD_METHODS,
  HEAD_PRESETS,
  HEAD_SEARCH_DEFAULTS,
  type HeadMethod,
  type HeadPreset,
  type HeadRecoveryReport,
  type HeadSearchEnv,
  type HeadSearchOptions,
  type HeadSearchResult,
  type HeadSearchSettings,
  headSearchSettings,
  RESUME_CHANGEABLE_FLAGS,
  resumeHeadSearch,
  SOS_PRESET,
  searchHeads,
} from './api/heads.js';
export { type EvaluateLabelsOptions, type EvaluateLabelsResult, evaluateLabels } from './api/labels.js';
export {
  type HeadList,
  type HeadMaskChoice,
  headMaskFromList,
  type ResolvedMasks,
  resolveHeadMask,
  resolveMasks,
  resolveWeightMask,
  type WeightMaskChoice,
} from './api/masks.js';
export { type ReportOptions, type ReportResult, report } from './api/report.js';
export {
  type PerplexityRunResult,
  perplexityRun,
  pruneWeights,
  registerWeightBaseline,
  resumeWeightPrune,
  WEIGHT_MASK_FILE,
  WEIGHT_PRESETS,
  WEIGHT_PRUNE_DEFAULTS,
  type WeightBaseline,
  type WeightBaselineInput,
  type WeightBaselineOutput,
  type WeightGivenSetting,
  type WeightPreset,
  type WeightPruneEnv,
  type WeightPruneOptions,
  type WeightPruneResult,
  type WeightPruneSettings,
  weightBaselineNames,
  weightPruneSettings,
} from './api/weights.js';
export type { ArchDescriptor, DecodeLoop, HeadStack } from './arch/descriptor.js';
export { generate as generateTokens } from './arch/generate.js';
export { type GreedyBatchOptions, type GreedyBatchResult, greedyDecodeBatch } from './arch/greedy.js';
export { archOf, headMaskShape, registerArch, unregisterArch } from './arch/registry.js';
// Building blocks.
export { openHfFolder, writeHfFolder } from './checkpoint/hf.js';
export { cacheDir, downloadHfModel, parseModelRef, resolveModelRef } from './checkpoint/hub.js';
export { openLlama2c, writeLlama2cLegacy } from './checkpoint/llama2c.js';
export { openSafetensors, writeSafetensors } from './checkpoint/safetensors.js';
export {
  type AccessPolicy,
  accessPolicy,
  type Dashboard,
  type DashboardOptions,
  hostHeaderName,
  isLoopbackAddress,
  isLoopbackHostHeader,
  requestAllowed,
} from './dashboard/server.js';
export {
  type ActivationStats,
  accumulateStats,
  type BlockPass,
  blockHidden,
  runBlock,
  statOf,
} from './engine/blocks.js';
export {
  checkMemoryBudget,
  estimatePeakMemory,
  type MemoryEstimate,
  parseByteSize,
  peakRssBytes,
} from './engine/memory.js';
export {
  allKeptHeadMask,
  type CandidateMasks,
  createRunner,
  type ModelRunner,
  type RunnerOptions,
  type TokenBatch,
} from './engine/runner.js';
export { availableDevices, createEngine, DEVICES, type Device, type Engine } from './engine/session.js';
export { dataError, type ErrorKind, fileError, flagError, GenepruneError } from './errors.js';
export {
  CAPTURE_POINTS,
  type CaptureKind,
  type CapturePoint,
  rolesOfCapturePoint,
  statsName,
} from './graph/capture.js';
export { buildDecoderGraph } from './graph/decoder.js';
export { buildEncDecEncoderGraph, buildEncDecGraph, buildEncDecStepGraph } from './graph/encdec.js';
export { type GraphOutputMode, VOCAB_CHUNK } from './graph/lmhead.js';
export {
  COMPUTE_DTYPES,
  type ComputeDtype,
  loadWeights,
  prepareWeights,
  releaseWeights,
  type WeightFile,
  type Weights,
} from './graph/weights.js';
export { type CalibrateOptions, calibrateLatency } from './latency/calibrate.js';
export {
  type LatencyProfile,
  layerShapesOfConfig,
  planSeconds,
  predictedSpeedup,
  predictSeconds,
  readLatencyProfile,
  writeLatencyProfile,
} from './latency/profile.js';
export { type HeadMaskFile, loadMaskFile, makeMaskFile, readMaskFile } from './masks/headfile.js';
export {
  holdsPattern,
  magnitudeScores,
  type NmPattern,
  parsePattern,
  selectGlobal,
  selectGlobalStreaming,
  selectNm,
  selectPerMatrix,
  selectPerRow,
  wandaScores,
} from './masks/select.js';
export {
  type LoadedWeightMask,
  loadWeightMaskFile,
  type WeightMaskFile,
  writeWeightMaskFile,
} from './masks/weightfile.js';
export {
  type LayerSparsity,
  type MatrixSparsity,
  type PrunableMatrix,
  prunableMatrices,
  type SparsityReport,
  type WeightMasks,
  weightMaskFeeds,
  weightMasksFromKeeps,
} from './masks/weights.js';
export {
  BLEU_KINDS,
  type BleuKind,
  type BleuOptions,
  type BleuScore,
  type BleuSmoothing,
  type BleuStatistics,
  type BleuTokenizer,
  bleuFromStatistics,
  bleuOf,
  bleuSegmentStatistics,
  corpusBleu,
  type NltkBleuOptions,
  nltkMethod1MeanBleu,
  nltkMethod1SentenceBleu,
  nltkSentenceBleu,
  sentenceBleu,
  sentenceMeanBleu,
  tokenize13a,
} from './metrics/bleu.js';
export {
  CHOICE_NORMS,
  type ChoiceItem,
  type ChoiceNorm,
  type ChoiceScore,
  type ChoiceScoreOptions,
  type ChoiceTask,
  type PreparedChoiceTask,
  parseChoiceTask,
  prepareChoiceTask,
  readChoiceTask,
  scoreChoices,
  sliceChoiceTask,
} from './metrics/choices.js';
export {
  accuracy,
  argmaxRows,
  type ClassificationData,
  type ClassificationItem,
  macroF1,
  parseClassificationData,
  perClassF1,
  readClassificationData,
} from './metrics/classification.js';
export {
  type CodeExecOptions,
  type CodeProblem,
  type ExecOutcome,
  type ExecResult,
  type PassAtOneResult,
  passAtOne,
  probeSandbox,
  programFor,
  runProgram,
  runPrograms,
  type Sandbox,
} from './metrics/codeexec.js';
export { type Dataset, firstNonTextByte, readDataset, streamDocuments } from './metrics/data.js';
export { exactMatch, exactMatchRate, normalizeForExactMatch } from './metrics/exactmatch.js';
export {
  applyPromptTemplate,
  type CompletionScores,
  checkPromptTemplate,
  codeProblemsOf,
  DEFAULT_PROMPT_TEMPLATE,
  GENERATION_BATCH_SIZE,
  GENERATION_MAX_NEW_TOKENS,
  type GenerationItem,
  type GenerationScore,
  type GenerationScoreOptions,
  type GenerationTask,
  type PreparedGenerationTask,
  parseGenerationTask,
  prepareGenerationTask,
  readGenerationTask,
  scoreCompletions,
  scoreGeneration,
  slicePreparedTask,
} from './metrics/generation.js';
export {
  computeKlReference,
  evaluateKl,
  evaluatePerplexity,
  makeWindows,
  type PerplexityResult,
  tokenizeDocuments,
  tokenizePrefix,
  type Windows,
} from './metrics/perplexity.js';
export {
  amountUnit,
  type ClassificationMetric,
  calibRecord,
  findMetric,
  generationMetrics,
  isClassificationMetric,
  labelledMetric,
  type MetricDataKind,
  type MetricEntry,
  metricEntry,
  metricNames,
  metricOfLabel,
  type ObjectiveFactory,
  qualityOfValue,
  quoteValue,
  registerMetric,
  relativeToDense,
} from './metrics/registry.js';
export type { CalibrationScorer, RawEvaluation, ScorerTarget } from './metrics/scorers.js';
export {
  buildContinuationTask,
  type ContinuationTaskOptions,
  continuationItems,
  generationTaskJsonl,
} from './metrics/storytask.js';
export {
  attentionFlops,
  countParameters,
  forwardFlopsPerToken,
  parameterCount,
  removedHeadParameters,
} from './model/cost.js';
export {
  type ModelIdentity,
  type ModelShape,
  modelFingerprint,
  modelIdentity,
  type Provenance,
} from './model/identity.js';
export { llamaSpecToHf, writeLlama2cFromSpec } from './model/llama.js';
export { loadModelSpec } from './model/load.js';
export { type OpenedModel, openModel } from './model/open.js';
export { randomLlamaSpec } from './model/random.js';
export {
  kvGroupOf,
  type ModelConfig,
  type ModelSpec,
  type TensorSource,
} from './model/spec.js';
export { pruneHeads } from './prune/heads.js';
export {
  type HeadRecoveryLayer,
  type HeadRecoveryOptions,
  type HeadRecoveryResult,
  oKeepOfGenome,
  recoverHeadRemoval,
} from './prune/recover-heads.js';
export {
  type RecoveryInputs,
  recoverStructuredRemoval,
  type StructuredRecoveryLinear,
  type StructuredRecoveryOptions,
  type StructuredRecoveryResult,
  type StructuredRefit,
} from './prune/recover-structured.js';
export { writtenSparsity, zeroMaskedWeights } from './prune/weights.js';
export {
  escapeHtml,
  type ReportFigure,
  renderReportHtml,
  renderSvg,
  reportFigures,
} from './report/html.js';
export {
  BENCH_FILE,
  type DataRow,
  type FrontRow,
  type GenerationRow,
  type HeadCell,
  type IndividualRow,
  type LayerSparsityRow,
  type MeasuredSpeed,
  type MethodRow,
  type ReportRun,
  type RunSpace,
  readRunForReport,
  readRunsForReport,
} from './report/rows.js';
export * as reportSpecs from './report/specs.js';
export type { EvalChoices, RunChoices } from './runs/choices.js';
export {
  DEFAULT_PICK_SPARSITY,
  type FrontPick,
  type FrontPoint as NsgaFrontPoint,
  frontOfArchive,
  type PickSpec,
  parsePick,
  pickBySpec,
  pickFromFront,
  targetRemovedOf,
} from './runs/front.js';
export { AUTO_TASK, type EvalBleu, type RunTask } from './runs/tasks.js';
export type { FitnessKind } from './search/fitness.js';
export {
  accuracyOfQuality,
  BLEU_SEARCH_ITEMS,
  BLEU_SEARCH_NEW_TOKENS,
  type BleuObjectiveOptions,
  bleuOfQuality,
  type ChoiceObjectiveOptions,
  createObjective,
  createPredictionObjective,
  type ElementwiseRunner,
  type Evaluation,
  type Fidelity,
  isNegatedMetric,
  metricLabel,
  type Objective,
  type ObjectiveOptions,
  type Predictor,
  QUALITY_METRICS,
  type QualityMetric,
  qualityOfAccuracy,
  qualityOfBleu,
  reportedQuality,
  type ScoredGenome,
  sequentialRunner,
} from './search/objective.js';
export { type QuotedBest, quotedBest, type SearchProgress } from './search/progress.js';
export { type ObjectiveRecord, objectiveRecord } from './search/record.js';
export type { GenomeCodec, SearchSpace } from './search/space.js';
export { type PickedMask, pickHeadMask } from './spaces/heads/pick.js';
export { type Budget, type BudgetSpec, parseBudget, priceBudget } from './spaces/structured/budget.js';
export {
  resumeStructuredSearch,
  runStructuredSearch,
  type StructuredSearchEnv,
  type StructuredSearchResult,
} from './spaces/structured/run.js';
export {
  STRUCTURED_METHODS,
  type StructuredSearchOptions,
  type StructuredSearchSettings,
  structuredSearchSettings,
} from './spaces/structured/settings.js';
export {
  createStructuredSpace,
  planFlopsPerToken,
  STRUCTURED_SPACES,
  type StructuredSpace,
} from './spaces/structured/space.js';
export type { BlockSearchProgress } from './spaces/weights/blockwise.js';
export {
  GA_PRESET,
  type GaLayerReport,
  type GaReport,
  type GaScore,
  geneticPrune,
} from './spaces/weights/ga.js';
export { blockSearchEta, blockSearchShare } from './spaces/weights/searchprogress.js';
export {
  SEEDED_DEFAULTS,
  type SeededLayerReport,
  type SeededReport,
} from './spaces/weights/seeded.js';
export { createWeightSpace, type WeightSpace } from './spaces/weights/space.js';
export { loadTokenizer } from './tokenizer/load.js';
export type { Tokenizer } from './tokenizer/types.js';
export { createRng, type Rng } from './util/rng.js';
