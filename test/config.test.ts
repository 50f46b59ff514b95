import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import {
  ConfigError,
  DEFAULT_MODEL_DIR,
  apiKeysFromArgv,
  flagName,
  parseConfig,
  redact,
  usage,
} from "../src/config.ts";
import {
  DEFAULT_ENGINE_OPTIONS,
  EngineSettingsSchema,
  engineOptionsFrom,
  kvPoolBlocks,
} from "../src/engine/options.ts";

/** One schema for flags and environment variables: precedence, parsing, and errors that name the
 * flag, the variable and where the bad value came from. */

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function configError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parseConfig(argv, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
    return e.message;
  }
  assert.fail(`no error for ${JSON.stringify({ argv, env })}`);
}

describe("sources and precedence", () => {
  test("defaults when nothing is given", () => {
    const c = parseConfig([], {});
    assert.equal(c.port, 8000);
    assert.equal(c.host, "0.0.0.0");
    assert.equal(c.modelDir, DEFAULT_MODEL_DIR);
    assert.equal(c.provider, "cpu");
    assert.equal(c.blockSize, 16);
    assert.equal(c.kvCacheBytes, 256 * 1024 * 1024);
    assert.equal(c.maxQueue, 256);
    assert.equal(c.drainTimeoutMs, 30_000);
    assert.equal(c.readinessTimeoutMs, 10_000);
    assert.equal(c.enablePrefixCaching, true);
    assert.deepEqual(c.apiKeys, []);
    assert.deepEqual(c.corsOrigins, []);
    assert.equal(c.logLevel, "info");
  });

  test("environment variables beat defaults; flags beat environment variables", () => {
    const env = {
      PORT: "9000",
      HOST: "127.0.0.1",
      NFCOT_MAX_NUM_SEQS: "8",
      NFCOT_LOG_LEVEL: "warn",
      NFCOT_PROVIDER: "cuda",
    };
    const fromEnv = parseConfig([], env);
    assert.equal(fromEnv.port, 9000);
    assert.equal(fromEnv.host, "127.0.0.1");
    assert.equal(fromEnv.maxNumSeqs, 8);
    assert.equal(fromEnv.logLevel, "warn");
    assert.equal(fromEnv.provider, "cuda");
    const both = parseConfig(["--port", "9001", "--max-num-seqs=4", "--log-level", "debug"], env);
    assert.equal(both.port, 9001);
    assert.equal(both.maxNumSeqs, 4);
    assert.equal(both.logLevel, "debug");
    assert.equal(both.host, "127.0.0.1", "the variable still applies where no flag is given");
    assert.equal(parseConfig([], { PORT: "" }).port, 8000, "an empty variable is unset");
  });

  test("sizes take binary suffixes; lists are comma-separated; booleans take words and bare flags", () => {
    assert.equal(parseConfig([], { NFCOT_KV_CACHE_BYTES: "512m" }).kvCacheBytes, 512 * 2 ** 20);
    assert.equal(parseConfig(["--kv-cache-bytes", "2GiB"], {}).kvCacheBytes, 2 * 2 ** 30);
    assert.equal(parseConfig(["--kv-cache-bytes=1.5g"], {}).kvCacheBytes, 1.5 * 2 ** 30);
    assert.equal(parseConfig(["--body-limit", "64k"], {}).bodyLimit, 65536);
    assert.equal(parseConfig(["--body-limit", "2MB"], {}).bodyLimit, 2 * 2 ** 20);
    assert.deepEqual(parseConfig([], { NFCOT_API_KEYS: "sk-a, sk-b,," }).apiKeys, ["sk-a", "sk-b"]);
    assert.deepEqual(parseConfig(["--cors-origins", "https://a.example,https://b.example"], {}).corsOrigins, [
      "https://a.example",
      "https://b.example",
    ]);
    assert.equal(parseConfig([], { NFCOT_ENABLE_PREFIX_CACHING: "off" }).enablePrefixCaching, false);
    assert.equal(parseConfig(["--enable-prefix-caching", "false"], {}).enablePrefixCaching, false);
    assert.equal(
      parseConfig(["--enable-prefix-caching", "--port", "1"], { NFCOT_ENABLE_PREFIX_CACHING: "0" }).enablePrefixCaching,
      true,
    );
  });

  test("every setting the operations issue names has a flag and a variable, listed in --help", () => {
    const help = usage();
    for (const [flag, env] of [
      ["--model-dir", "NFCOT_MODEL_DIR"],
      ["--host", "HOST"],
      ["--port", "PORT"],
      ["--provider", "NFCOT_PROVIDER"],
      ["--threads", "NFCOT_THREADS"],
      ["--kv-cache-bytes", "NFCOT_KV_CACHE_BYTES"],
      ["--block-size", "NFCOT_BLOCK_SIZE"],
      ["--max-num-seqs", "NFCOT_MAX_NUM_SEQS"],
      ["--max-num-batched-tokens", "NFCOT_MAX_NUM_BATCHED_TOKENS"],
      ["--max-queue", "NFCOT_MAX_QUEUE"],
      ["--request-timeout-ms", "NFCOT_REQUEST_TIMEOUT_MS"],
      ["--body-limit", "NFCOT_BODY_LIMIT"],
      ["--api-keys", "NFCOT_API_KEYS"],
      ["--cors-origins", "NFCOT_CORS_ORIGINS"],
      ["--log-level", "NFCOT_LOG_LEVEL"],
      ["--drain-timeout-ms", "NFCOT_DRAIN_TIMEOUT_MS"],
      ["--readiness-timeout-ms", "NFCOT_READINESS_TIMEOUT_MS"],
    ]) {
      assert.match(help, new RegExp(`^  ${flag}\\s+${env}\\s`, "m"), flag);
    }
    assert.match(configError(["--help"]), /^usage:/);
  });

  test("the start-up echo never prints API keys", () => {
    const shown = JSON.stringify(redact(parseConfig(["--api-keys", "sk-secret-1,sk-secret-2"], {})));
    assert.doesNotMatch(shown, /sk-secret/);
    assert.match(shown, /"apiKeys":"2 key\(s\)"/);
  });
});

describe("errors name the flag, the variable and the source", () => {
  test("a non-number", () => {
    assert.equal(
      configError(["--port", "eighty"]),
      'invalid configuration:\n  --port (PORT): expected integer, got "eighty" from flag --port',
    );
  });

  test("out of range, from the environment", () => {
    const m = configError([], { PORT: "70000", NFCOT_THREADS: "-1" });
    assert.match(
      m,
      /--port \(PORT\): expected integer to be less or equal to 65535, got 70000 from environment variable PORT/,
    );
    assert.match(
      m,
      /--threads \(NFCOT_THREADS\): expected integer to be greater or equal to 0, got -1 from environment variable NFCOT_THREADS/,
    );
  });

  test("a bad size and a fraction where an integer is needed", () => {
    assert.match(
      configError([], { NFCOT_KV_CACHE_BYTES: "lots" }),
      /--kv-cache-bytes \(NFCOT_KV_CACHE_BYTES\): expected integer, got "lots" from environment variable/,
    );
    assert.match(
      configError(["--max-queue", "2.5"]),
      /--max-queue \(NFCOT_MAX_QUEUE\): expected integer, got 2.5 from flag --max-queue/,
    );
    assert.match(
      configError(["--body-limit", "0.5k"]),
      /--body-limit \(NFCOT_BODY_LIMIT\): expected integer to be greater or equal to 1024, got 512 from flag/,
    );
  });

  test("a choice outside the list names the choices", () => {
    assert.match(
      configError(["--provider", "tpu"]),
      /--provider \(NFCOT_PROVIDER\): expected one of cpu, cuda, got "tpu" from flag --provider/,
    );
    assert.match(
      configError([], { NFCOT_LOG_LEVEL: "loud" }),
      /--log-level \(NFCOT_LOG_LEVEL\): expected one of fatal, error, warn, info, debug, trace, silent/,
    );
    assert.match(
      configError([], { NFCOT_ENABLE_PREFIX_CACHING: "maybe" }),
      /--enable-prefix-caching \(NFCOT_ENABLE_PREFIX_CACHING\): expected boolean, got "maybe"/,
    );
  });

  test("unknown options and missing values", () => {
    assert.match(configError(["--prot", "80"]), /^unknown option --prot\n\nusage:/);
    assert.equal(configError(["--port"]), "option --port (PORT) needs a value");
    assert.equal(configError(["--port", "--host", "x"]), "option --port (PORT) needs a value");
  });
});

describe("the server process", () => {
  const start = (args: string[], env: Record<string, string>) =>
    spawnSync(process.execPath, ["--import", "tsx", "src/server.ts", ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 30_000,
    });

  test("exits 2 on a bad value, before loading anything, with the message on stderr", () => {
    const flag = start(["--max-num-seqs", "0"], {});
    assert.equal(flag.status, 2);
    assert.match(
      flag.stderr,
      /--max-num-seqs \(NFCOT_MAX_NUM_SEQS\): expected integer to be greater or equal to 1, got 0 from flag --max-num-seqs/,
    );
    assert.equal(flag.stdout, "", "nothing was started");
    const env = start([], { NFCOT_PROVIDER: "tpu" });
    assert.equal(env.status, 2);
    assert.match(
      env.stderr,
      /--provider \(NFCOT_PROVIDER\): expected one of cpu, cuda, got "tpu" from environment variable NFCOT_PROVIDER/,
    );
  });

  test("warns at start when API keys come from the command line, never printing them; not for the environment", () => {
    const env = { NFCOT_MODEL_DIR: "/nonexistent/model", PORT: "0", HOST: "127.0.0.1" };
    const lines = (out: string) =>
      out
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string });
    for (const args of [["--api-keys", "sk-secret-argv"], ["--api-keys=sk-secret-argv"]]) {
      const r = start(args, env);
      assert.equal(r.status, 1); // the model directory does not exist: it stops right after the warning
      const warns = lines(r.stdout).filter((l) => l.level === 40);
      assert.equal(warns.length, 1, r.stdout);
      assert.match(warns[0]!.msg, /command line.*NFCOT_API_KEYS/);
      assert.doesNotMatch(r.stdout + r.stderr, /sk-secret-argv/);
    }
    const fromEnv = start([], { ...env, NFCOT_API_KEYS: "sk-secret-env" });
    assert.deepEqual(
      lines(fromEnv.stdout).filter((l) => l.level === 40),
      [],
    );
    assert.doesNotMatch(fromEnv.stdout + fromEnv.stderr, /sk-secret-env/);
    assert.equal(apiKeysFromArgv(["--port", "1"]), false);
    assert.match(usage(), /set NFCOT_API_KEYS in the environment/);
  });

  test("exits 1 with a plain message when the model directory does not exist", () => {
    const r = start([], {
      NFCOT_MODEL_DIR: "/nonexistent/model",
      PORT: "0",
      HOST: "127.0.0.1",
      NFCOT_LOG_LEVEL: "silent",
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^nfcot-serve failed to start: .*\/nonexistent\/model/m);
  });
});

test("--model (vLLM's spelling) sets the model directory", () => {
  assert.equal(parseConfig(["--model", "/tmp/qwen3"], {}).modelDir, "/tmp/qwen3");
  assert.equal(parseConfig(["--model=/tmp/q"], {}).modelDir, "/tmp/q");
});

describe("the engine's settings are the engine's schema, composed into the config", () => {
  test("every engine setting has a flag, and the defaults are the engine's", () => {
    const help = usage();
    for (const key of Object.keys(EngineSettingsSchema.properties)) {
      assert.match(help, new RegExp(`^  ${flagName(key)}\\s`, "m"), key);
    }
    assert.deepEqual(engineOptionsFrom(parseConfig([], {})), {
      ...DEFAULT_ENGINE_OPTIONS,
      modelDir: DEFAULT_MODEL_DIR,
    });
  });

  test("the worker gets the engine's keys only, with the values given", () => {
    const config = parseConfig(
      ["--kv-cache-blocks", "12", "--graph-optimization", "basic", "--api-keys", "sk-x", "--thread-spinning"],
      { NFCOT_THREADS: "3" },
    );
    const opts = engineOptionsFrom(config);
    assert.deepEqual(Object.keys(opts).sort(), ["modelDir", ...Object.keys(EngineSettingsSchema.properties)].sort());
    assert.equal(opts.kvCacheBlocks, 12);
    assert.equal(opts.graphOptimization, "basic");
    assert.equal(opts.threads, 3);
    assert.equal(opts.threadSpinning, true);
    assert.equal(
      engineOptionsFrom(parseConfig([], {})).threadSpinning,
      false,
      "threads sleep between kernels by default",
    );
    assert.equal(engineOptionsFrom(parseConfig([], { NFCOT_THREAD_SPINNING: "1" })).threadSpinning, true);
    assert.equal(config.apiKeys.length, 1, "the config itself is untouched");
  });

  test("the KV pool: --kv-cache-blocks wins when set, else the bytes over one block's", () => {
    assert.equal(kvPoolBlocks({ ...DEFAULT_ENGINE_OPTIONS, kvCacheBlocks: 12 }, 1000), 12);
    assert.equal(kvPoolBlocks({ ...DEFAULT_ENGINE_OPTIONS, kvCacheBytes: 10_500 }, 1000), 10);
    assert.equal(kvPoolBlocks({ ...DEFAULT_ENGINE_OPTIONS, kvCacheBytes: 10 }, 1000), 1, "never an empty pool");
  });
});
