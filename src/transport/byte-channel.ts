import type { Readable, Writable } from 'node:stream';
import type { ServerChannel } from 'ssh2';

/**
 * The two ends a pofr channel is served over: an ssh2 exec channel of the embedded server, or the
 * stdin/stdout of a forced command that the site's own sshd runs (OpenSSH mode). The enrollment
 * and ingest protocols are written once against this and run unchanged on either.
 */
export interface ByteChannel {
  onData(fn: (chunk: Buffer) => void): void;
  /** The peer sent EOF: nothing more will arrive. */
  onEnd(fn: () => void): void;
  /** The channel is gone (either side closed it). */
  onClose(fn: () => void): void;
  onError(fn: (e: Error) => void): void;
  /** False when the peer is not reading: wait for onDrain. */
  write(data: Buffer): boolean;
  /** Stops reading: the peer waits in SSH flow control. */
  pause(): void;
  resume(): void;
  /** Ends the channel with an exit status; `message` goes to the peer's stderr first. */
  finish(status: number, message?: string): void;
  readonly finished: boolean;
}

/** An exec channel of the embedded ssh2 server. */
export function sshByteChannel(channel: ServerChannel): ByteChannel {
  let finished = false;
  channel.on('close', () => {
    finished = true;
  });
  return {
    onData: (fn) => channel.on('data', fn),
    onEnd: (fn) => channel.on('end', fn),
    onClose: (fn) => channel.on('close', fn),
    onError: (fn) => channel.on('error', fn),
    write: (data) => channel.write(data),
    pause: () => channel.pause(),
    resume: () => channel.resume(),
    finish(status, message) {
      if (finished || channel.destroyed) return;
      finished = true;
      if (message) channel.stderr.write(`pofr: ${message}\n`);
      channel.exit(status);
      channel.end();
    },
    get finished() {
      return finished;
    },
  };
}

/**
 * stdin/stdout of a forced command (sshd relays them to the client's exec channel, and the exit
 * status of this process as the channel's). `onFinished` is told the status once stdout is flushed:
 * the caller then exits the process, which is what makes sshd close the channel.
 */
export function stdioByteChannel(
  stdin: Readable,
  stdout: Writable,
  stderr: Writable,
  onFinished: (status: number) => void,
): ByteChannel {
  let finished = false;
  const closeHandlers: (() => void)[] = [];
  const gone = () => {
    if (finished) return;
    finished = true;
    for (const fn of closeHandlers) fn();
  };
  // sshd closing the session shows as EPIPE on stdout. The end of stdin is not the end of the
  // channel: a client sends EOF after its last batch and still waits for the ACKs.
  stdout.on('error', gone);
  return {
    onData: (fn) => stdin.on('data', fn),
    onEnd: (fn) => stdin.on('end', fn),
    onClose: (fn) => closeHandlers.push(fn),
    onError: (fn) => stdin.on('error', fn),
    write: (data) => (finished ? false : stdout.write(data)),
    pause: () => stdin.pause(),
    resume: () => stdin.resume(),
    finish(status, message) {
      if (finished) return;
      finished = true;
      if (message) stderr.write(`pofr: ${message}\n`);
      stdin.pause();
      stdout.end(() => onFinished(status));
      for (const fn of closeHandlers) fn();
    },
    get finished() {
      return finished;
    },
  };
}
