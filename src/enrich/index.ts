export { type AsnAnswer, type AsnLookup, BUNDLED_ASN_PACKAGE, openBundledAsn } from './asn-ranges.js';
export {
  BUNDLED_COUNTRY_DB,
  type EnrichmentFiles,
  type GeoAnswer,
  type GeoLookup,
  openGeoip,
} from './geoip.js';
export { isPublicAddress, type RdnsOptions, ReverseDnsCache } from './reverse-dns.js';
