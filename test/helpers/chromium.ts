import type { Page } from 'playwright-core';

export { CHROMIUM, chromiumMissing, launchChromium } from '../../bench/chromium-launch.js';

/** Every console error and uncaught exception of a page, to assert there were none. */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}
