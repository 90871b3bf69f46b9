/**
 * A small leveled logger writing one line per event to stderr (stdout stays free for command
 * output such as tables and CSV). Services set CM_LOG_FORMAT=json for machine-readable lines.
 * Hand-written rather than pino: we need four methods and no transports, and the CLI's
 * terminal view must be able to redirect log lines around its progress bar (`setSink`).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export interface Logger {
  debug(msg: string, ctx?: Record<string, unknown>): void;
  info(msg: string, ctx?: Record<string, unknown>): void;
  warn(msg: string, ctx?: Record<string, unknown>): void;
  error(msg: string, ctx?: Record<string, unknown>): void;
  child(name: string): Logger;
}

type Sink = (line: string) => void;
let sink: Sink = (line) => process.stderr.write(line + '\n');
let globalLevel: LogLevel = (process.env.CM_LOG_LEVEL as LogLevel | undefined) ?? 'info';
let jsonFormat = process.env.CM_LOG_FORMAT === 'json';

export function setLogLevel(level: LogLevel): void {
  globalLevel = level;
}
/** Whether lines of `level` are written now: for a caller whose context is costly to gather. */
export function logLevelEnabled(level: Exclude<LogLevel, 'silent'>): boolean {
  return ORDER[level] >= ORDER[globalLevel];
}
export function setLogFormat(format: 'text' | 'json'): void {
  jsonFormat = format === 'json';
}
/** Redirect log output (for example above a progress bar); returns the previous sink. */
export function setSink(next: Sink): Sink {
  const prev = sink;
  sink = next;
  return prev;
}

export function createLogger(name: string): Logger {
  const emit = (level: Exclude<LogLevel, 'silent'>, msg: string, ctx?: Record<string, unknown>): void => {
    if (ORDER[level] < ORDER[globalLevel]) return;
    if (jsonFormat) {
      sink(JSON.stringify({ time: new Date().toISOString(), level, name, msg, ...ctx }));
    } else {
      const extra = ctx && Object.keys(ctx).length ? ' ' + JSON.stringify(ctx) : '';
      sink(
        `${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} [${name}] ${msg}${extra}`,
      );
    }
  };
  return {
    debug: (m, c) => emit('debug', m, c),
    info: (m, c) => emit('info', m, c),
    warn: (m, c) => emit('warn', m, c),
    error: (m, c) => emit('error', m, c),
    child: (sub) => createLogger(`${name}.${sub}`),
  };
}
