import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * File offsets of a shared library's exported functions (its `.dynsym`), which is what
 * uprobe_events wants: `readelf -sW libc.so.6` by hand. Only 64-bit little-endian files; a symbol's
 * address is turned into a file offset through the loaded segment that holds it.
 */

const SHT_DYNSYM = 11;
const PT_LOAD = 1;
const STT_FUNC = 2;
/** Larger section tables or symbol tables than this are not a library the recorder probes. */
const MAX_BYTES = 64 << 20;

function readAt(fd: number, offset: number, length: number): Buffer | null {
  if (length < 0 || length > MAX_BYTES) return null;
  const buf = Buffer.alloc(length);
  return readSync(fd, buf, 0, length, offset) === length ? buf : null;
}

/**
 * The file offset of each named function the library defines (the first definition of a name
 * that has several versions: the default one comes first in glibc), or an empty map when the file
 * is not a 64-bit little-endian ELF or cannot be read.
 */
export function readElfFunctionOffsets(path: string, names: ReadonlySet<string>): Map<string, number> {
  const out = new Map<string, number>();
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return out;
  }
  try {
    const size = fstatSync(fd).size;
    const head = readAt(fd, 0, 64);
    if (head === null || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return out;
    const phoff = Number(head.readBigUInt64LE(32));
    const shoff = Number(head.readBigUInt64LE(40));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    const shentsize = head.readUInt16LE(58);
    const shnum = head.readUInt16LE(60);
    if (shentsize < 64 || phentsize < 56 || shoff + shnum * shentsize > size) return out;
    const ph = readAt(fd, phoff, phnum * phentsize);
    const sh = readAt(fd, shoff, shnum * shentsize);
    if (ph === null || sh === null) return out;
    const loads: { vaddr: number; offset: number; filesz: number }[] = [];
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      if (ph.readUInt32LE(at) !== PT_LOAD) continue;
      loads.push({
        offset: Number(ph.readBigUInt64LE(at + 8)),
        vaddr: Number(ph.readBigUInt64LE(at + 16)),
        filesz: Number(ph.readBigUInt64LE(at + 32)),
      });
    }
    for (let i = 0; i < shnum; i++) {
      const at = i * shentsize;
      if (sh.readUInt32LE(at + 4) !== SHT_DYNSYM) continue;
      const symOff = Number(sh.readBigUInt64LE(at + 24));
      const symSize = Number(sh.readBigUInt64LE(at + 32));
      const link = sh.readUInt32LE(at + 40);
      const entsize = Number(sh.readBigUInt64LE(at + 56)) || 24;
      if (link >= shnum) return out;
      const strAt = link * shentsize;
      const strs = readAt(fd, Number(sh.readBigUInt64LE(strAt + 24)), Number(sh.readBigUInt64LE(strAt + 32)));
      const syms = readAt(fd, symOff, symSize);
      if (strs === null || syms === null) return out;
      for (let s = 0; s + entsize <= syms.length; s += entsize) {
        const type = syms[s + 4] & 0xf;
        const shndx = syms.readUInt16LE(s + 6);
        // An IFUNC's address is its resolver, not the function: only plain functions are probed.
        if (type !== STT_FUNC || shndx === 0) continue;
        const nameAt = syms.readUInt32LE(s);
        const nul = strs.indexOf(0, nameAt);
        const name = strs.toString('latin1', nameAt, nul < 0 ? strs.length : nul);
        if (!names.has(name) || out.has(name)) continue;
        const value = Number(syms.readBigUInt64LE(s + 8));
        const seg = loads.find((l) => value >= l.vaddr && value < l.vaddr + l.filesz);
        if (seg) out.set(name, value - seg.vaddr + seg.offset);
      }
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
