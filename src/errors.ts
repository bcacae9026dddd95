/**
 * Typed errors. Every failure a user can cause (bad file, bad flag, bad data) is a GenepruneError that names
 * what is at fault; the CLI prints `geneprune: <where>: <message>` on one line and exits non-zero.
 */
export type ErrorKind = 'file' | 'flag' | 'data' | 'model' | 'device' | 'network' | 'internal';

export class GenepruneError extends Error {
  readonly kind: ErrorKind;
  /** The file, flag or resource at fault (a path, `--flag`, a URL), when there is one. */
  readonly where?: string;

  constructor(kind: ErrorKind, message: string, where?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GenepruneError';
    this.kind = kind;
    this.where = where;
  }

  /** One line for the terminal. */
  oneLine(): string {
    const text = this.message.replace(/\s*\n\s*/g, ' ');
    return this.where ? `${this.where}: ${text}` : text;
  }
}

/** A problem with a file's contents or presence: corrupt, truncated, missing, inconsistent. */
export function fileError(path: string, message: string, cause?: unknown): GenepruneError {
  return new GenepruneError('file', message, path, { cause });
}

/** A bad command-line flag or option value. */
export function flagError(flag: string, message: string): GenepruneError {
  return new GenepruneError('flag', message, flag);
}

/** A problem with data (empty, too short, wrong format). */
export function dataError(where: string, message: string): GenepruneError {
  return new GenepruneError('data', message, where);
}
