/**
 * Typed errors. Every error that reaches a user carries a stable `code`, the context needed to act
 * on it (which run, which layer, which file...) and, where we know it, a hint saying what to do.
 * The CLI prints `message` and `hint` on one line; `--verbose` adds the stack.
 */
export type CmErrorCode =
  | 'INVALID_ARGUMENT' // bad shapes, NaN, wrong dtype, malformed message
  | 'NOT_FOUND' // unknown run, bundle, file
  | 'ALREADY_EXISTS' // a new run under an id the service already knows
  | 'CONFIG' // invalid configuration / environment
  | 'UNAVAILABLE' // a service could not be reached or died
  | 'TIMEOUT'
  | 'CORRUPT' // data on disk does not match its manifest/hash
  | 'RESOURCE_EXHAUSTED' // oversized message, memory bound reached
  | 'INTERNAL';

export class CmError extends Error {
  readonly code: CmErrorCode;
  readonly context: Readonly<Record<string, unknown>>;
  readonly hint?: string;

  constructor(
    code: CmErrorCode,
    message: string,
    options: { context?: Record<string, unknown>; hint?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CmError';
    this.code = code;
    this.context = options.context ?? {};
    this.hint = options.hint;
  }

  /** One line for a terminal: what went wrong and what to do. */
  toOneLine(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export function invalidArgument(message: string, context?: Record<string, unknown>, hint?: string): CmError {
  return new CmError('INVALID_ARGUMENT', message, { context, hint });
}

export function notFound(message: string, context?: Record<string, unknown>, hint?: string): CmError {
  return new CmError('NOT_FOUND', message, { context, hint });
}

export function isCmError(e: unknown): e is CmError {
  return e instanceof CmError;
}

/** The message of anything thrown, for logs. */
export function errorMessage(e: unknown): string {
  if (e instanceof CmError) return e.toOneLine();
  if (e instanceof Error) return e.message;
  return String(e);
}
