import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { engineInfo } from "../src/engine/engine-info.ts";
import { modelInfo } from "../src/model/model-info.ts";
import { eosTokenIds, latentUnavailableReason, loadManifest, ManifestError } from "../src/model/manifest.ts";
import { SHIPPED_MODEL } from "./helpers/python.ts";

/** The manifest contract of /work/coord/manifest-contract.md (models/README.md): latent optional,
 * special tokens optional but eos, eos_token_ids, family / weights / source. */

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function withManifest(edit: (m: any) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-manifest-"));
  dirs.push(dir);
  cpSync(SHIPPED_MODEL, dir, { recursive: true });
  const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  edit(m);
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(m));
  return dir;
}

const THOUGHT_IO = ["thought_inputs", "is_thought", "mu", "log_sigma"];
/** The shipped manifest turned text-only (graph files left as they are; only the manifest is read). */
const textOnly = (m: any) => {
  delete m.latent;
  delete m.special_tokens.bot;
  delete m.special_tokens.eot;
  const bb = m.graphs.backbone;
  bb.inputs = bb.inputs.filter((t: any) => !THOUGHT_IO.includes(t.name));
  bb.outputs = bb.outputs.filter((t: any) => !THOUGHT_IO.includes(t.name));
  m.graphs = { backbone: bb };
  m.reasoning_modes = ["none"];
  m.default_reasoning_mode = "none";
};

const refused = (edit: (m: any) => void, pattern: RegExp) =>
  assert.throws(
    () => loadManifest(withManifest(edit)),
    (e: Error) => e instanceof ManifestError && pattern.test(e.message),
  );

test("the shipped manifest stays valid and latent", () => {
  const m = loadManifest(SHIPPED_MODEL);
  assert.equal(latentUnavailableReason(m), null);
  assert.deepEqual(eosTokenIds(m), [3]);
});

test("a text-only manifest with the Hugging Face fields loads; its model info has no thoughts and says why", () => {
  const dir = withManifest((m) => {
    textOnly(m);
    delete m.special_tokens.bos;
    m.architecture.family = "qwen3";
    m.eos_token_ids = [12, 3];
    m.weights = { dtype: "float32" };
    m.source = { hf_architecture: "Qwen3ForCausalLM", exporter_commit: "abc123", flags: [] };
  });
  const m = loadManifest(dir);
  assert.deepEqual(eosTokenIds(m), [3, 12]);
  const info = modelInfo(m);
  assert.equal(info.hasThoughtDecoder, false);
  assert.equal(info.hasFlow, false);
  assert.equal(info.numThoughts, 0);
  assert.equal(info.thoughtDim, 0);
  assert.deepEqual(info.reasoningModes, ["none"]);
  assert.deepEqual(info.eosTokenIds, [3, 12]);
  assert.equal(info.special.bos, undefined);
  assert.match(info.latentUnavailable!, /no NF-CoT extras/);
  // The served context: the model's, lowered to what one KV block of 16 positions holds.
  const served = engineInfo(m, { modelDir: dir, numBlocks: 1, blockSize: 16, provider: "cpu", weightsVersion: "v0" });
  assert.equal(served.maxContext, 16);
  assert.equal(served.modelMaxContext, info.maxContext);
  assert.ok(info.maxContext > 16);
});

test("inconsistent latent declarations are refused, naming the field", () => {
  refused((m) => delete m.special_tokens.eos, /special_tokens.*eos/);
  refused((m) => delete m.special_tokens.bot, /special_tokens\.bot is required when latent is present/);
  refused((m) => {
    m.graphs.backbone.outputs = m.graphs.backbone.outputs.filter((t: any) => t.name !== "mu");
  }, /latent is present but graphs\.backbone lacks mu/);
  refused((m) => {
    textOnly(m);
    m.reasoning_modes = ["none", "latent"];
  }, /reasoning_modes names 'latent' but the manifest has no latent section/);
  refused((m) => {
    const bb = m.graphs.backbone.inputs;
    textOnly(m);
    m.graphs.backbone.inputs = bb;
  }, /graphs\.backbone declares thought_inputs, is_thought but the manifest has no latent section/);
  refused((m) => {
    const flow = m.graphs.flow_forward;
    textOnly(m);
    m.graphs.flow_forward = flow;
  }, /graphs\.flow_forward needs a latent section/);
  refused((m) => {
    textOnly(m);
    m.default_reasoning_mode = "explicit";
  }, /default_reasoning_mode 'explicit' is not in reasoning_modes \[none\]/);
  refused((m) => (m.eos_token_ids = [3, 246]), /eos_token_ids holds 246, outside the vocabulary \(vocab_size 246\)/);
  refused((m) => (m.special_tokens.eos = 300), /special_tokens\.eos 300 is outside the vocabulary/);
});
