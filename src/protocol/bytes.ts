import { isUtf8 } from 'node:buffer';

/**
 * Kernel strings (argv, paths, comm) are bytes, not always UTF-8. On the wire they are a JSON
 * string when the bytes are valid UTF-8 (the common case, readable), else `{ b64 }` so that no
 * byte is lost. Valid UTF-8 round-trips exactly through a JS string, so both forms are lossless.
 *
 * @example toWireBytes(Buffer.from([0x66, 0xff])) // => { b64: 'Zv8=' }
 */
export type WireBytes = string | { readonly b64: string };

export function toWireBytes(buf: Uint8Array): WireBytes {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf);
  return isUtf8(b) ? b.toString('utf8') : { b64: b.toString('base64') };
}

export function fromWireBytes(w: WireBytes): Buffer {
  return typeof w === 'string' ? Buffer.from(w, 'utf8') : Buffer.from(w.b64, 'base64');
}

export function isRawBytes(w: WireBytes): w is { readonly b64: string } {
  return typeof w !== 'string';
}

/**
 * A readable, single-valued rendering for tables and text search: valid UTF-8 as is; every byte of
 * an invalid sequence as `\xNN`. It is not reversible on its own (a literal "\x41" reads the same),
 * which is why the store keeps the raw bytes beside it whenever the input was not UTF-8.
 */
export function displayBytes(w: WireBytes | Uint8Array): string {
  if (typeof w === 'string') return w;
  const b = w instanceof Uint8Array ? Buffer.from(w) : Buffer.from(w.b64, 'base64');
  if (isUtf8(b)) return b.toString('utf8');
  let out = '';
  let i = 0;
  while (i < b.length) {
    const len = utf8SequenceLength(b, i);
    if (len > 0) {
      out += b.subarray(i, i + len).toString('utf8');
      i += len;
    } else {
      out += `\\x${b[i].toString(16).padStart(2, '0')}`;
      i += 1;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there starts none. */
function utf8SequenceLength(b: Buffer, i: number): number {
  const c = b[i];
  if (c < 0x80) return 1;
  const len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (len === 0 || i + len > b.length) return 0;
  return isUtf8(b.subarray(i, i + len)) ? len : 0;
}
