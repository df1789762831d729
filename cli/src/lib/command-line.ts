import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { UsageError } from './run-command.js';

export interface GlobalOptions {
  verbose: boolean;
  quiet: boolean;
}

function packageVersion(): string {
  // dist/lib/command-line.js → cli/package.json; read at run time so the version has one home.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * The option parser every alhvr-* command starts from: the same --help, --version, --verbose
 * and --quiet everywhere, unknown options rejected, and parse errors raised as UsageError
 * (exit code 2) instead of yargs printing the whole help text.
 */
export function commandLine(command: string, args: string[], usage: string, description: string): Argv<GlobalOptions> {
  return yargs(args)
    .scriptName(command)
    .usage(`Usage: ${command} ${usage}\n\n${description}`)
    .option('verbose', { type: 'boolean', default: false, description: 'Print more detail, and the stack trace on errors' })
    .option('quiet', { type: 'boolean', default: false, description: 'Print only results and errors (no progress)' })
    .group(['verbose', 'quiet', 'help', 'version'], 'General options:')
    .help('help')
    .alias('help', 'h')
    .version('version', 'Show the version number', packageVersion())
    .strict()
    .strictOptions()
    .showHelpOnFail(false)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((message, err) => {
      if (err) throw err;
      // yargs spreads some messages over lines ("Invalid values:\n  Argument: device, Given: …"),
      // and the error contract prints one line: keep every part of it on that line.
      const oneLine = message.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
      throw new UsageError(`${oneLine} (see ${command} --help)`);
    });
}
