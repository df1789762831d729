/** A problem with the command line itself (unknown option, missing argument): exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Thrown (or surfaced) when the user interrupted the command; maps to exit code 130. */
export class CancelledError extends Error {
  constructor() {
    super('interrupted');
    this.name = 'CancelledError';
  }
}

export interface CommandContext {
  /** Aborted on the first Ctrl-C: stop work, remove temporaries, then return or throw. */
  signal: AbortSignal;
}

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;
/** 128 + signal number, as shells report a process stopped by that signal. */
export const EXIT_TERMINATED = 143;

type StopSignal = 'SIGINT' | 'SIGTERM';
const STOP_EXIT_CODES: Record<StopSignal, number> = { SIGINT: EXIT_INTERRUPTED, SIGTERM: EXIT_TERMINATED };

/** Throw CancelledError if the user has pressed Ctrl-C; call between units of work. */
export function throwIfCancelled(signal: AbortSignal): void {
  if (signal.aborted) throw new CancelledError();
}

/** The one line printed for an error: the message only, first line only for foreign errors. */
export function errorLine(command: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const firstLine = message.split('\n').find((l) => l.trim() !== '') ?? 'unknown error';
  return `${command}: error: ${firstLine.trim()}`;
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof CancelledError) return EXIT_INTERRUPTED;
  if (err instanceof UsageError) return EXIT_USAGE;
  return EXIT_FAILURE;
}

function isVerbose(argv: readonly string[]): boolean {
  // Checked on the raw arguments so that errors thrown while parsing still honour --verbose.
  return argv.includes('--verbose');
}

/**
 * Run a command's main function with the toolkit's error contract: one line
 * `<command>: error: <message>` on stderr and exit code 1 (2 for usage errors, 130 when
 * interrupted, 143 when stopped by SIGTERM); the stack trace only with --verbose. The first Ctrl-C
 * or SIGTERM aborts `ctx.signal` so the command can clean up; a second one exits at once.
 */
export async function runCommand(
  command: string,
  main: (args: string[], ctx: CommandContext) => Promise<number | void>,
  args: string[] = process.argv.slice(2),
): Promise<void> {
  const controller = new AbortController();
  let stopSignal: StopSignal = 'SIGINT';
  // SIGTERM is how schedulers stop a job (Slurm scancel and time limits, docker stop, Kubernetes
  // eviction): it gets the same clean stop as Ctrl-C, within the grace period they allow.
  const onSignal = (name: StopSignal) => {
    if (controller.signal.aborted) process.exit(STOP_EXIT_CODES[stopSignal]);
    stopSignal = name;
    const how = name === 'SIGINT' ? 'press Ctrl-C again to quit now' : 'send it again to quit now';
    process.stderr.write(`\n${command}: ${name === 'SIGINT' ? 'interrupted' : 'SIGTERM received'}, cleaning up (${how})\n`);
    controller.abort();
  };
  const onSigint = () => onSignal('SIGINT');
  const onSigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  let code: number;
  try {
    const result = await main(args, { signal: controller.signal });
    code = controller.signal.aborted ? STOP_EXIT_CODES[stopSignal] : (result ?? 0);
  } catch (err) {
    code = controller.signal.aborted ? STOP_EXIT_CODES[stopSignal] : exitCodeFor(err);
    if (controller.signal.aborted) {
      process.stderr.write(`${command}: interrupted\n`);
    } else {
      process.stderr.write(`${errorLine(command, err)}\n`);
      if (isVerbose(args) && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    }
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
  }
  // Let stdout/stderr drain instead of process.exit(), which can cut off piped output.
  process.exitCode = code;
}
