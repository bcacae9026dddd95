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

export interface Tokenizer {
  vocabSize: number;
  bosId?: number;
  eosId?: number;
  encode(text: string, opts?: EncodeOptions): number[];
  /** Text of a whole id list; BOS/EOS control tokens contribute no text. */
  decode(ids: number[]): string;
  /** text of one token given the previous token, for streaming */
  decodeToken(prev: number | undefined, id: number): string;
  /** Where it came from (a file path), for messages and run logs. */
  source: string;
}
