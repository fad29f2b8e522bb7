import assert from 'node:assert/strict';
import { test } from 'node:test';
import { displayBytes, fromWireBytes, toWireBytes } from '../../src/protocol/index.js';

test('valid UTF-8 travels as a plain string and comes back byte for byte', () => {
  const buf = Buffer.from('résumé "quoted"\nnew line %s 🐧', 'utf8');
  const w = toWireBytes(buf);
  assert.equal(typeof w, 'string');
  assert.deepEqual(fromWireBytes(w), buf);
});

test('invalid UTF-8 travels as base64 and comes back byte for byte', () => {
  const buf = Buffer.from([0x2f, 0x74, 0x6d, 0x70, 0x2f, 0xff, 0xc3, 0x28, 0x0a]);
  const w = toWireBytes(buf);
  assert.deepEqual(w, { b64: buf.toString('base64') });
  assert.deepEqual(fromWireBytes(w), buf);
});

test('display form escapes only the invalid bytes', () => {
  const buf = Buffer.concat([Buffer.from('/tmp/é'), Buffer.from([0xff]), Buffer.from('x')]);
  assert.equal(displayBytes(toWireBytes(buf)), '/tmp/é\\xffx');
});
