import { fileURLToPath } from "node:url";
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { EngineSettingsSchema } from "./engine/options.ts";

/** One schema for every setting; each comes from a CLI flag, else its environment variable, else
 * the default. Validated at start; errors name the flag and the variable. The engine's settings
 * are the engine's schema (src/engine/options.ts), composed in. */

export const DEFAULT_MODEL_DIR = fileURLToPath(new URL("../models/nfcot-trace-small", import.meta.url));

const Int = (min: number, def: number, max?: number) =>
  Type.Integer({ minimum: min, default: def, ...(max !== undefined ? { maximum: max } : {}) });

export const ConfigSchema = Type.Object({
  modelDir: Type.String({ default: DEFAULT_MODEL_DIR, minLength: 1 }),
  servedModelName: Type.String({ default: "" }),
  host: Type.String({ default: "0.0.0.0", minLength: 1 }),
  port: Int(0, 8000, 65535),
  ...EngineSettingsSchema.properties,
  maxQueue: Int(1, 256),
  maxN: Int(1, 16, 128),
  requestTimeoutMs: Int(0, 600_000),
  drainTimeoutMs: Int(0, 30_000),
  readinessTimeoutMs: Int(1, 10_000),
  bodyLimit: Int(1024, 1024 * 1024),
  // Characters of text one request asks to tokenize (prompt, messages, answers), checked before
  // the tokenizer and chat template run on the HTTP thread. 0: 16 per token of the context.
  maxPromptChars: Int(0, 0),
  // Receiving one request's headers and body, and an idle connection's first request: 408 after.
  clientTimeoutMs: Int(1000, 30_000),
  apiKeys: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  publicDocs: Type.Boolean({ default: false }),
  publicTokenizer: Type.Boolean({ default: false }),
  // Empty: no admin routes at all (weight updates are off).
  adminKey: Type.String({ default: "" }),
  corsOrigins: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  logLevel: Type.Union(
    ["fatal", "error", "warn", "info", "debug", "trace", "silent"].map((l) => Type.Literal(l)),
    { default: "info" },
  ),
});
export type Config = Static<typeof ConfigSchema>;
type Key = keyof Config;

const ENV: Record<Key, string> = {
  modelDir: "NFCOT_MODEL_DIR",
  servedModelName: "NFCOT_SERVED_MODEL_NAME",
  host: "HOST",
  port: "PORT",
  provider: "NFCOT_PROVIDER",
  threads: "NFCOT_THREADS",
  threadSpinning: "NFCOT_THREAD_SPINNING",
  graphOptimization: "NFCOT_GRAPH_OPTIMIZATION",
  kvCacheBytes: "NFCOT_KV_CACHE_BYTES",
  kvCacheBlocks: "NFCOT_KV_CACHE_BLOCKS",
  blockSize: "NFCOT_BLOCK_SIZE",
  enablePrefixCaching: "NFCOT_ENABLE_PREFIX_CACHING",
  maxNumSeqs: "NFCOT_MAX_NUM_SEQS",
  maxNumBatchedTokens: "NFCOT_MAX_NUM_BATCHED_TOKENS",
  maxQueue: "NFCOT_MAX_QUEUE",
  maxN: "NFCOT_MAX_N",
  requestTimeoutMs: "NFCOT_REQUEST_TIMEOUT_MS",
  drainTimeoutMs: "NFCOT_DRAIN_TIMEOUT_MS",
  readinessTimeoutMs: "NFCOT_READINESS_TIMEOUT_MS",
  bodyLimit: "NFCOT_BODY_LIMIT",
  maxPromptChars: "NFCOT_MAX_PROMPT_CHARS",
  clientTimeoutMs: "NFCOT_CLIENT_TIMEOUT_MS",
  apiKeys: "NFCOT_API_KEYS",
  publicDocs: "NFCOT_PUBLIC_DOCS",
  publicTokenizer: "NFCOT_PUBLIC_TOKENIZER",
  adminKey: "NFCOT_ADMIN_KEY",
  corsOrigins: "NFCOT_CORS_ORIGINS",
  logLevel: "NFCOT_LOG_LEVEL",
};

export const flagName = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export class ConfigError extends Error {}

function convert(key: Key, raw: string): unknown {
  const schema = (ConfigSchema.properties as Record<Key, TSchema>)[key];
  if (schema.type === "array")
    return raw
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  if (schema.type === "boolean") {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    return raw;
  }
  if (schema.type === "integer") {
    // Sizes take binary suffixes (512m, 1.5GiB); a negative or fractional number stays a number so
    // that the error names the bound or the integer rule, not "expected integer, got a string".
    const m = /^(-?\d+(?:\.\d+)?)\s*(k|ki|m|mi|g|gi)?b?$/i.exec(raw.trim());
    if (!m) return raw;
    const unit = (m[2] ?? "").toLowerCase();
    const mult = unit.startsWith("k") ? 1024 : unit.startsWith("m") ? 1024 ** 2 : unit.startsWith("g") ? 1024 ** 3 : 1;
    return Number(m[1]) * mult;
  }
  return raw;
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const raw: Partial<Record<Key, unknown>> = {};
  const byFlag = new Map(Object.keys(ENV).map((k) => [flagName(k), k as Key]));
  byFlag.set("--model", "modelDir"); // vLLM's spelling (`vllm serve --model DIR`)
  const source: Partial<Record<Key, string>> = {};
  for (const k of Object.keys(ENV) as Key[]) {
    const v = env[ENV[k]];
    if (v !== undefined && v !== "") {
      raw[k] = convert(k, v);
      source[k] = `environment variable ${ENV[k]}`;
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") throw new ConfigError(usage());
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const key = byFlag.get(flag);
    if (!key) throw new ConfigError(`unknown option ${flag}\n\n${usage()}`);
    let value = inline;
    if (value === undefined) {
      const schema = (ConfigSchema.properties as Record<Key, TSchema>)[key];
      const next = argv[i + 1];
      const missing = next === undefined || next.startsWith("--");
      if (schema.type === "boolean" && missing) value = "true";
      else if (!missing) value = argv[++i];
    }
    if (value === undefined) throw new ConfigError(`option ${flag} (${ENV[key]}) needs a value`);
    raw[key] = convert(key, value);
    source[key] = `flag ${flag}`;
  }
  const withDefaults = Value.Default(ConfigSchema, raw) as Record<string, unknown>;
  const errors = [...Value.Errors(ConfigSchema, withDefaults)];
  if (errors.length) {
    const seen = new Set<Key>();
    const lines = errors.flatMap((e) => {
      const key = e.path.split("/")[1] as Key;
      if (seen.has(key)) return []; // one line per setting: the first problem names it
      seen.add(key);
      const from = source[key] ?? "default";
      return [
        `${flagName(key)} (${ENV[key]}): ${explain(key, e.message)}, got ${JSON.stringify(e.value)} from ${from}`,
      ];
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join("\n  ")}`);
  }
  return withDefaults as Config;
}

/** TypeBox says "Expected union value" for a bad choice: list the choices instead. */
function explain(key: Key, message: string): string {
  const schema = (ConfigSchema.properties as Record<Key, TSchema>)[key];
  const choices = (schema.anyOf as TSchema[] | undefined)?.map((s) => s.const as unknown);
  return choices ? `expected one of ${choices.join(", ")}` : message.replace(/^Expected/, "expected");
}

export function usage(): string {
  const props = ConfigSchema.properties as Record<Key, TSchema>;
  return (
    "usage: npm start -- [options]\n\noptions (flag, environment variable, default):\n" +
    (Object.keys(ENV) as Key[])
      .map((k) => `  ${flagName(k).padEnd(26)} ${ENV[k].padEnd(30)} ${JSON.stringify(props[k].default)}`)
      .join("\n") +
    "\n  --model is --model-dir." +
    "\n\nAPI keys: set NFCOT_API_KEYS in the environment (or a Secret). --api-keys works, but a\n" +
    "command line is visible to every user in ps and ends up in shell history and npm's echo.\n"
  );
}

/** Keys given on the command line are visible in `ps` (and in npm's echo of the command). */
export function apiKeysFromArgv(argv: string[]): boolean {
  const flag = flagName("apiKeys");
  return argv.some((a) => a === flag || a.startsWith(`${flag}=`));
}

/** The config as logged at start: API keys are never printed. */
export function redact(c: Config): Record<string, unknown> {
  return {
    ...c,
    apiKeys: c.apiKeys.length ? `${c.apiKeys.length} key(s)` : "none",
    adminKey: c.adminKey ? "set" : "none",
  };
}
