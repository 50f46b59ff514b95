import type { TestContext } from "node:test";

/** The size knob of the reliability suites: RELIABILITY_SCALE=full runs the numbers the issue
 * states (`npm run test:reliability`); anything else runs the reduced set that `npm test` picks
 * up, sized for CI on two cores. */

export const FULL = process.env["RELIABILITY_SCALE"] === "full";
export const SCALE_NAME = FULL ? "full" : "reduced";

export function scaled<T>(reduced: T, full: T): T {
  return FULL ? full : reduced;
}

/** What a suite tried and what held, as numbers, in the test report (every reporter prints it). */
export function report(t: TestContext, title: string, numbers: Record<string, number | string | boolean>): void {
  const line = `${title} [${SCALE_NAME}]: ${Object.entries(numbers)
    .map(([k, v]) => `${k} ${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : v}`)
    .join(", ")}`;
  t.diagnostic(line);
}
