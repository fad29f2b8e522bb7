import type { Random } from './random.js';

/**
 * Public address blocks the seeded hosts talk to, spread over many countries and networks so the
 * country and ASN lookups at ingest have real answers to give. Chosen by the network they belong to
 * (CDNs, clouds, ISPs, hosting providers often seen in scans), not by any one address.
 */
const CLIENT_BLOCKS: readonly (readonly [string, number])[] = [
  ['84.17', 6], // DE (residential)
  ['88.198', 4], // DE (Hetzner)
  ['91.198', 3], // NL
  ['193.0', 2], // NL (RIPE)
  ['212.58', 4], // GB
  ['81.2', 4], // GB
  ['90.84', 4], // FR
  ['151.101', 5], // US (Fastly)
  ['24.6', 6], // US (residential)
  ['73.15', 6], // US
  ['98.137', 4], // US
  ['142.250', 4], // US (Google)
  ['189.6', 3], // BR
  ['200.160', 2], // BR
  ['126.10', 3], // JP
  ['133.242', 2], // JP
  ['110.33', 2], // CN
  ['182.140', 2], // CN
  ['49.36', 3], // IN
  ['1.160', 2], // KR
  ['41.203', 2], // ZA
  ['62.152', 2], // ES
  ['80.116', 2], // IT
  ['83.220', 2], // RU
  ['178.176', 2], // RU
  ['203.2', 2], // AU
];

/** Blocks scanners and intruders come from in the seeded incidents and in ssh scans. */
const HOSTILE_BLOCKS: readonly string[] = [
  '45.142.212',
  '185.220.101',
  '193.142.146',
  '218.92.0',
  '61.177.172',
  '5.188.206',
  '92.255.85',
];

/** Outbound destinations by what the host fetches there. */
export const OUTBOUND = {
  debianMirror: ['151.101.2.132', '151.101.66.132', '146.75.78.132'],
  github: ['140.82.121.3', '140.82.121.4', '140.82.112.3'],
  npmRegistry: ['104.16.1.35', '104.16.2.35', '104.16.3.35'],
  pypi: ['151.101.0.223', '151.101.64.223'],
  paymentApi: ['54.187.174.169', '54.187.205.235', '54.241.31.99'],
  mailRelay: ['74.125.140.26', '209.85.233.27', '173.194.76.26'],
  ntp: ['162.159.200.1', '162.159.200.123', '193.0.0.229'],
  s3: ['52.217.45.110', '3.5.29.171', '52.216.8.139'],
} as const;

export function clientIp(rng: Random): string {
  const block = rng.weighted(CLIENT_BLOCKS);
  return `${block}.${rng.int(1, 254)}.${rng.int(1, 254)}`;
}

export function hostileIp(rng: Random): string {
  return `${rng.pick(HOSTILE_BLOCKS)}.${rng.int(2, 250)}`;
}

/** A few clients come over IPv6 (Google, Deutsche Telekom, Comcast blocks). */
export function clientIp6(rng: Random): string {
  const prefix = rng.pick(['2a00:1450:4001', '2003:e2:a70f', '2601:646:8b00']);
  return `${prefix}:${rng.int(1, 0xffff).toString(16)}::${rng.int(1, 0xffff).toString(16)}`;
}
