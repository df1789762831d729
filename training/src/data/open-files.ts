import { closeSync, openSync } from 'node:fs';

/**
 * File descriptors of the slice caches, opened on first use and kept open: a training run reads
 * one slice at a time from a handful of files, thousands of times.
 */
export class OpenFiles {
  private readonly fds = new Map<string, number>();

  fd(path: string): number {
    let fd = this.fds.get(path);
    if (fd === undefined) {
      fd = openSync(path, 'r');
      this.fds.set(path, fd);
    }
    return fd;
  }

  closeAll(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
