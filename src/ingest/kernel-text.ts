import { isUtf8 } from 'node:buffer';
import { displayBytes, fromWireBytes, isRawBytes, type WireBytes } from '../protocol/index.js';

/** A kernel string as the store keeps it: readable text, plus the exact bytes when the text is not. */
export interface KernelText {
  readonly text: string;
  readonly raw: Buffer | null;
}

/** Keeps the bytes only when they are not UTF-8: then the display text (\xNN) cannot be reversed. */
export function kernelText(w: WireBytes): KernelText {
  if (!isRawBytes(w)) return { text: w, raw: null };
  const bytes = fromWireBytes(w);
  return isUtf8(bytes)
    ? { text: bytes.toString('utf8'), raw: null }
    : { text: displayBytes(bytes), raw: bytes };
}

/** argv as the store keeps it: JSON display array, space-joined command line, NUL-terminated raw. */
export interface KernelArgv {
  readonly argv: string;
  readonly cmdline: string;
  readonly raw: Buffer | null;
}

export function kernelArgv(args: readonly WireBytes[]): KernelArgv {
  const display: string[] = new Array(args.length);
  let lossy = false;
  for (let i = 0; i < args.length; i++) {
    const k = kernelText(args[i]);
    display[i] = k.text;
    if (k.raw !== null) lossy = true;
  }
  let raw: Buffer | null = null;
  if (lossy) {
    // Same layout as /proc/PID/cmdline, so the bytes can be compared with a live system's.
    const parts: Buffer[] = [];
    const nul = Buffer.from([0]);
    for (const a of args) parts.push(fromWireBytes(a), nul);
    raw = Buffer.concat(parts);
  }
  return { argv: JSON.stringify(display), cmdline: display.join(' '), raw };
}
