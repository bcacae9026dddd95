/**
 * The one tokenizer interface the rest of geneprune sees, whatever file it came from
 * (llama2.c `tokenizer.bin` or Hugging Face `tokenizer.json`).
 */
export interface EncodeOptions {
  /** Prepend the BOS token (when the tokenizer has one). Default: the tokenizer's own convention. */
  bos?: boolean;
  /** Append the EOS token (when the tokenizer has one). Default: the tokenizer's own convention. */
  eos?: boolean;
}

export interface EncodeInputOptions {
  /** A second text (e.g. the hypothesis of a premise/hypothesis pair), placed by the tokenizer's pair template. */
  pair?: string;
  /**
   * The most tokens the result may hold, special tokens included. Longer inputs lose tokens from their end,
   * from the longer text of a pair first (Hugging Face's 'longest_first'); the special tokens always stay.
   */
  maxLength?: number;
}

/** One model input: token ids with the tokenizer's special tokens in place, and their segment (type) ids. */
export interface ModelInput {
  ids: number[];
  /** 0 for the first text and its specials, 1 for the second text's part where the template says so. */
  typeIds: number[];
  /** Whether maxLength cut tokens off (callers warn: the model saw less than the whole text). */
  truncated: boolean;
}

export interface Tokenizer {
  vocabSize: number;
  bosId?: number;
  eosId?: number;
  /** The padding token, when the tokenizer names one (tokenizer_config.json `pad_token` or tokenizer.json `padding`). */
  padId?: number;
  encode(text: string, opts?: EncodeOptions): number[];
  /**
   * A text (or text pair) as one model input, with the tokenizer's own special-token template
   * (e.g. BERT's [CLS] A [SEP] B [SEP]), for classification and other whole-input models.
   */
  encodeInput(text: string, opts?: EncodeInputOptions): ModelInput;
  /** Text of a whole id list; BOS/EOS control tokens contribute no text. */
  decode(ids: number[]): string;
  /** text of one token given the previous token, for streaming */
  decodeToken(prev: number | undefined, id: number): string;
  /** Where it came from (a file path), for messages and run logs. */
  source: string;
}
