/** Where progress goes: a writable with an optional TTY flag and width (process.stderr fits). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  /** Units already done before this process started (a resumed run): shown in the counts, left out of the rate. */
  initial?: number;
  /** Shown before the counts, e.g. "cases". */
  label?: string;
  stream?: ProgressStream;
  /** Print nothing (--quiet). */
  quiet?: boolean;
  /** Milliseconds clock; injectable so the formatting can be tested without waiting. */
  now?: () => number;
  /** Minimum time between redraws on a TTY, and between lines otherwise. */
  ttyIntervalMs?: number;
  lineIntervalMs?: number;
}

export interface Progress {
  /** Record that `n` more units are done. */
  tick(n?: number): void;
  /** Record the absolute number of units done. */
  update(done: number): void;
  /** Print the final state and end the line. */
  finish(): void;
}

/** "1m05s", "3s", "2h04m": short, fixed vocabulary durations for ETAs. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return '--/s';
  return perSecond >= 10 ? `${perSecond.toFixed(0)}/s` : perSecond >= 1 ? `${perSecond.toFixed(1)}/s` : `${(perSecond * 60).toFixed(1)}/min`;
}

export interface ProgressState {
  done: number;
  total: number;
  elapsedMs: number;
  /** Units done before the clock started (resumed work); the rate counts only `done - initial`. */
  initial?: number;
}

/** Seconds left at this process's average rate; NaN before it has done anything. */
export function etaSeconds({ done, total, elapsedMs, initial = 0 }: ProgressState): number {
  const doneHere = done - initial;
  if (doneHere <= 0 || elapsedMs <= 0) return NaN;
  return ((total - done) * elapsedMs) / doneHere / 1000;
}

function percent(done: number, total: number): number {
  return total > 0 ? Math.floor((100 * done) / total) : 100;
}

/** The plain-text line for logs and pipes: `[12/40] 30% ETA 1m05s`. */
export function formatProgressLine(state: ProgressState, label = ''): string {
  const { done, total } = state;
  const tail = done >= total ? `done in ${formatDuration(state.elapsedMs / 1000)}` : `ETA ${formatDuration(etaSeconds(state))}`;
  return `${label ? `${label} ` : ''}[${done}/${total}] ${percent(done, total)}% ${tail}`;
}

/** The single redrawn TTY line: label, bar, counts, percentage, rate and ETA, fitted to `width`. */
export function formatProgressBar(state: ProgressState, width: number, label = ''): string {
  const { done, total, elapsedMs, initial = 0 } = state;
  const rate = elapsedMs > 0 ? ((done - initial) * 1000) / elapsedMs : NaN;
  const tail = done >= total ? `done in ${formatDuration(elapsedMs / 1000)}` : `ETA ${formatDuration(etaSeconds(state))}`;
  const info = `${done}/${total} ${percent(done, total)}% ${formatRate(rate)} ${tail}`;
  const head = label ? `${label} ` : '';
  const barWidth = Math.max(0, Math.min(40, width - head.length - info.length - 4));
  if (barWidth < 5) return `${head}${info}`.slice(0, Math.max(1, width - 1));
  const filled = total > 0 ? Math.round((barWidth * Math.min(done, total)) / total) : barWidth;
  return `${head}[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${info}`;
}

/**
 * A progress reporter that redraws one bar on a terminal and prints a plain line every few
 * seconds otherwise (CI logs, pipes). Output is throttled so tight loops cost nothing.
 */
export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  const tty = stream.isTTY === true;
  const interval = tty ? (options.ttyIntervalMs ?? 100) : (options.lineIntervalMs ?? 5000);
  const total = Math.max(0, options.total);
  const start = now();
  const initial = Math.max(0, Math.min(total, options.initial ?? 0));
  let done = initial;
  let lastDraw = -Infinity;
  let finished = false;
  let drawnOnce = false;

  const draw = (force: boolean) => {
    if (options.quiet || finished) return;
    const t = now();
    if (!force && t - lastDraw < interval) return;
    lastDraw = t;
    const state = { done, total, elapsedMs: t - start, initial };
    if (tty) {
      const width = stream.columns && stream.columns > 20 ? stream.columns : 80;
      stream.write(`\r${formatProgressBar(state, width, options.label)}\x1b[K`);
    } else {
      stream.write(`${formatProgressLine(state, options.label)}\n`);
    }
    drawnOnce = true;
  };

  return {
    tick(n = 1) {
      done = Math.min(total, done + n);
      draw(false);
    },
    update(value) {
      done = Math.max(0, Math.min(total, value));
      draw(false);
    },
    finish() {
      if (finished) return;
      draw(true);
      if (tty && drawnOnce && !options.quiet) stream.write('\n');
      finished = true;
    },
  };
}
