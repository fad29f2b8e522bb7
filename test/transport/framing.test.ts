import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isPofrError } from '../../src/errors.js';
import { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from '../../src/transport/index.js';

describe('length-prefixed framing', () => {
  test('frames survive being split into single bytes and glued together', () => {
    const payloads = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(70_000, 7), Buffer.from('last')];
    const wire = Buffer.concat(payloads.map((p) => encodeFrame(p)));
    const dec = new FrameDecoder();
    const got: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 1) got.push(...dec.push(wire.subarray(i, i + 1)));
    assert.deepEqual(got, payloads);
    assert.equal(dec.buffered, 0);

    const whole = new FrameDecoder().push(wire);
    assert.deepEqual(whole, payloads);
  });

  test('a partial frame waits for the rest', () => {
    const dec = new FrameDecoder();
    const wire = encodeFrame(Buffer.from('hello world'));
    assert.deepEqual(dec.push(wire.subarray(0, 6)), []);
    assert.equal(dec.buffered, 2);
    assert.deepEqual(dec.push(wire.subarray(6)), [Buffer.from('hello world')]);
  });

  test('an oversize length is refused as soon as it is announced', () => {
    const dec = new FrameDecoder(1024);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1025);
    assert.throws(
      () => dec.push(header),
      (e) =>
        isPofrError(e) &&
        e.code === 'POFR_BATCH_TOO_LARGE' &&
        /1025 bytes, over the 1024-byte limit/.test(e.message),
    );
    assert.ok(MAX_FRAME_BYTES > 32 * 1024 * 1024);
    assert.throws(
      () => encodeFrame(Buffer.alloc(MAX_FRAME_BYTES + 1)),
      (e) => isPofrError(e),
    );
  });
});
