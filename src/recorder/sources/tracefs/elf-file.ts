import { closeSync, openSync, readSync } from 'node:fs';

/**
 * The little of an ELF file the recorder needs to probe a program's first instruction: its entry
 * point as a file offset, and its interpreter. Read by hand (64 bytes of header and the program
 * headers) because that is all of it, and no maintained npm package reads ELF without pulling in
 * a whole binary-analysis toolkit.
 */
export interface ElfEntry {
  /** 64-bit little-endian, the layout the argv probe's stack offsets assume. */
  readonly supported: boolean;
  readonly machine: number;
  /** PT_INTERP, the dynamic loader the kernel maps for it; null when statically linked. */
  readonly interpreter: Buffer | null;
  /** File offset of e_entry (what uprobe_events wants), or null when no loaded segment holds it. */
  readonly entryOffset: number | null;
}

const PT_LOAD = 1;
const PT_INTERP = 3;
const PF_X = 1;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;

/** Reads an ELF file's entry and interpreter; null when the file is not ELF or unreadable. */
export function readElfEntry(path: string): ElfEntry | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 64) return null;
    if (head.readUInt32BE(0) !== 0x7f454c46) return null;
    const is64 = head[4] === 2;
    const little = head[5] === 1;
    const machine = head.readUInt16LE(18);
    if (!is64 || !little) return { supported: false, machine, interpreter: null, entryOffset: null };
    const entry = Number(head.readBigUInt64LE(24));
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    if (phentsize < 56 || phnum === 0 || phnum > 4096) return null;
    const ph = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, ph, 0, ph.length, phoff) < ph.length) return null;
    let interpreter: Buffer | null = null;
    let entryOffset: number | null = null;
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      const type = ph.readUInt32LE(at);
      const flags = ph.readUInt32LE(at + 4);
      const offset = Number(ph.readBigUInt64LE(at + 8));
      const vaddr = Number(ph.readBigUInt64LE(at + 16));
      const filesz = Number(ph.readBigUInt64LE(at + 32));
      if (type === PT_INTERP && filesz > 1 && filesz <= 4096) {
        const buf = Buffer.alloc(filesz);
        if (readSync(fd, buf, 0, filesz, offset) === filesz) {
          const nul = buf.indexOf(0);
          interpreter = buf.subarray(0, nul < 0 ? filesz : nul);
        }
      }
      if (type === PT_LOAD && (flags & PF_X) !== 0 && entry >= vaddr && entry < vaddr + filesz) {
        entryOffset = entry - vaddr + offset;
      }
    }
    return { supported: machine === EM_X86_64 || machine === EM_AARCH64, machine, interpreter, entryOffset };
  } finally {
    closeSync(fd);
  }
}
