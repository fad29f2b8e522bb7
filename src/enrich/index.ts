export { BUNDLED_COUNTRY_DB, type GeoLookup, openGeoip } from './geoip.js';
