/**
 * An error about user input (a file, a folder, an option) that the CLIs print as one line
 * naming the file and the problem, without a stack trace.
 */
export class InputError extends Error {
  readonly path?: string;
  constructor(message: string, path?: string) {
    super(path ? `${path}: ${message}` : message);
    this.name = 'InputError';
    this.path = path;
  }
}
