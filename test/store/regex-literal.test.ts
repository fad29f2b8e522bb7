import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requiredLiteral } from '../../src/store/regex-literal.js';

test('requiredLiteral finds the run of plain characters every match must hold, or gives up', () => {
  const cases: [string, string | null][] = [
    ['sudo', 'sudo'],
    ['^/usr/bin/sudo\\b', '/usr/bin/sudo'],
    ['\\.conf$', '.conf'],
    ['ab+c', 'ab'],
    ['bas?h', 'ba'],
    ['sshd*', 'ssh'],
    ['x{2}yz', 'yz'],
    ['python[0-9]+ -c', 'python'],
    ['(sudo) -u', ' -u'],
    ['(?:ab)?cdef', 'cdef'],
    ['ssh|telnet', null],
    ['(a|b)cdef', null],
    ['\\x41bc', null],
    ['\\u{1F600}abc', null],
    ['.*', null],
    ['[abc]', null],
    ['caf\u00e9\u{1F600}?', 'caf\u00e9'],
    ['broken(', null],
  ];
  for (const [pattern, want] of cases) assert.equal(requiredLiteral(pattern), want, pattern);
  // Whatever it returns, every string the pattern matches holds it.
  for (const [pattern, sample] of [
    ['ab+c', 'abbbc'],
    ['bas?h', 'bah'],
    ['x{2}yz', 'xxyz'],
    ['sshd*', 'ssh'],
  ] as const) {
    assert.ok(new RegExp(pattern, 'u').test(sample));
    assert.ok(sample.includes(requiredLiteral(pattern)!), pattern);
  }
});
