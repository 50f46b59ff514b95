import { parseArgs, type ParseArgsConfig } from "node:util";

/** Command-line parsing for the benchmarks: node:util parseArgs, with the usage text printed
 * (exit code 2) on a bad flag or value, and for --help (exit code 0). Negative numbers need the
 * --flag=value form (parseArgs reads "-3" as an option). */

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parseCli<O extends Options>(
  options: O,
  usage: string,
): ReturnType<typeof parseArgs<{ options: O }>>["values"] {
  if (process.argv.slice(2).some((arg) => arg === "--help" || arg === "-h")) {
    console.log(usage);
    process.exit(0);
  }
  try {
    return parseArgs<{ options: O }>({ options }).values;
  } catch (e) {
    fail(usage, (e as Error).message);
  }
}

/** A number flag ("inf" is Infinity); undefined stays undefined. */
export function numberArg(
  usage: string,
  name: string,
  raw: string | undefined,
  valid: (x: number) => boolean = (x) => x >= 0,
): number | undefined {
  if (raw === undefined) return undefined;
  const x = raw === "inf" ? Infinity : Number(raw);
  if (raw.trim() === "" || Number.isNaN(x) || !valid(x)) fail(usage, `--${name}: invalid value ${JSON.stringify(raw)}`);
  return x;
}

export const isPositiveInt = (x: number) => Number.isSafeInteger(x) && x > 0;
export const isNonNegativeInt = (x: number) => Number.isSafeInteger(x) && x >= 0;

export function fail(usage: string, message: string): never {
  console.error(`${message}\n\n${usage}`);
  process.exit(2);
}
