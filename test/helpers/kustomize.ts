import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";

/** The subset of `kustomize build` that docker/k8s uses, so the tests can render the manifests
 * without a kustomize binary: resources (files and directories), images, patches (strategic-merge
 * or JSON 6902, from a file or inline). Anything else in a kustomization.yaml is an error, not a
 * silent difference from the real tool. */

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const SUPPORTED = new Set(["apiVersion", "kind", "resources", "images", "patches"]);

export function readYamlDocs(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const out: K8sObject[] = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    const v = d.toJS();
    if (v === null || v === undefined) continue; // empty document, e.g. after a trailing ---
    out.push(v as K8sObject);
  }
  return out;
}

export function kustomizeBuild(dir: string): K8sObject[] {
  const file = ["kustomization.yaml", "kustomization.yml", "Kustomization"].map((f) => join(dir, f)).find(existsSync);
  if (!file) throw new Error(`no kustomization in ${dir}`);
  const k = readYamlDocs(file)[0] as unknown as Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key))
      throw new Error(`${file}: "${key}" is not supported by this test helper; extend test/helpers/kustomize.ts`);
  }
  let objects: K8sObject[] = [];
  for (const r of (k.resources as string[] | undefined) ?? []) {
    const p = resolve(dir, r);
    objects.push(...(statSync(p).isDirectory() ? kustomizeBuild(p) : readYamlDocs(p)));
  }
  const ids = new Set<string>();
  for (const o of objects) {
    const id = resId(o);
    if (ids.has(id)) throw new Error(`${file}: duplicate resource ${id}`);
    ids.add(id);
  }
  for (const p of (k.patches as PatchEntry[] | undefined) ?? []) objects = applyPatch(objects, p, dir);
  for (const img of (k.images as ImageEntry[] | undefined) ?? []) objects.forEach((o) => setImage(o, img));
  return objects;
}

export const resId = (o: K8sObject) => `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;

// --- images

interface ImageEntry {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

function splitImage(image: string): { name: string; tag?: string; digest?: string } {
  const [rest, digest] = image.split("@") as [string, string | undefined];
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  // A colon before the last slash belongs to a registry port, not a tag.
  if (colon > slash) return { name: rest.slice(0, colon), tag: rest.slice(colon + 1), digest };
  return { name: rest, digest };
}

function setImage(o: K8sObject, img: ImageEntry): void {
  for (const c of podContainers(o)) {
    const cur = splitImage(c.image as string);
    if (cur.name !== img.name) continue;
    const name = img.newName ?? cur.name;
    if (img.digest) c.image = `${name}@${img.digest}`;
    else {
      const tag = img.newTag ?? cur.tag;
      c.image = name + (tag ? `:${tag}` : "") + (!img.newTag && cur.digest ? `@${cur.digest}` : "");
    }
  }
}

function podContainers(o: K8sObject): JsonObject[] {
  const spec = o.spec as JsonObject | undefined;
  const podSpec = (
    o.kind === "Pod"
      ? spec
      : o.kind === "CronJob"
        ? ((((spec?.jobTemplate as JsonObject)?.spec as JsonObject)?.template as JsonObject)?.spec as JsonObject)
        : ((spec?.template as JsonObject)?.spec as JsonObject)
  ) as JsonObject | undefined;
  if (!podSpec) return [];
  return [...((podSpec.containers as JsonObject[]) ?? []), ...((podSpec.initContainers as JsonObject[]) ?? [])];
}

// --- patches

interface PatchEntry {
  path?: string;
  patch?: string;
  target?: { group?: string; version?: string; kind?: string; name?: string; namespace?: string };
  options?: unknown;
}

function applyPatch(objects: K8sObject[], entry: PatchEntry, dir: string): K8sObject[] {
  if (entry.options !== undefined) throw new Error("patch options are not supported by this test helper");
  const text = entry.path !== undefined ? readFileSync(join(dir, entry.path), "utf8") : entry.patch;
  if (text === undefined) throw new Error("a patch needs path or patch");
  const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown);
  if (docs.length !== 1) throw new Error("one patch document per entry is supported");
  const patch = docs[0];
  if (Array.isArray(patch)) {
    // JSON 6902: needs an explicit target.
    if (!entry.target) throw new Error("a JSON 6902 patch needs a target");
    const hits = objects.filter((o) => matchesTarget(o, entry.target!));
    if (!hits.length) throw new Error(`JSON 6902 patch target matches nothing: ${JSON.stringify(entry.target)}`);
    return objects.map((o) =>
      hits.includes(o) ? (applyJson6902(o as unknown as Json, patch as Op[]) as unknown as K8sObject) : o,
    );
  }
  const p = patch as K8sObject;
  const target = entry.target ?? {
    kind: p.kind,
    name: p.metadata?.name,
    group: groupOf(p.apiVersion),
    version: versionOf(p.apiVersion),
  };
  const hits = objects.filter((o) => matchesTarget(o, target));
  if (!hits.length) throw new Error(`strategic-merge patch matches nothing: ${JSON.stringify(target)}`);
  return objects.map((o) => {
    if (!hits.includes(o)) return o;
    // The patch's own identity fields do not rename the target.
    const { metadata, ...rest } = p;
    const { name: _n, namespace: _ns, ...meta } = (metadata ?? {}) as JsonObject;
    return strategicMerge(
      o as unknown as Json,
      { ...rest, metadata: meta } as unknown as Json,
      "",
    ) as unknown as K8sObject;
  });
}

const groupOf = (apiVersion: string) => (apiVersion.includes("/") ? apiVersion.split("/")[0]! : "");
const versionOf = (apiVersion: string) => apiVersion.split("/").at(-1)!;

function matchesTarget(o: K8sObject, t: NonNullable<PatchEntry["target"]>): boolean {
  return (
    (t.kind === undefined || t.kind === o.kind) &&
    (t.name === undefined || t.name === o.metadata.name) &&
    (t.namespace === undefined || t.namespace === o.metadata.namespace) &&
    (t.group === undefined || t.group === groupOf(o.apiVersion)) &&
    (t.version === undefined || t.version === versionOf(o.apiVersion))
  );
}

/** Lists merged by a key in Kubernetes' strategic merge patch (patchMergeKey in the API types); every
 * other list is replaced by the patch's, as the real implementation does. */
const MERGE_KEYS: Record<string, string> = {
  containers: "name",
  initContainers: "name",
  ephemeralContainers: "name",
  env: "name",
  volumes: "name",
  volumeMounts: "mountPath",
  volumeDevices: "devicePath",
  ports: "containerPort",
  imagePullSecrets: "name",
  hostAliases: "ip",
};

function strategicMerge(base: Json, patch: Json, key: string): Json {
  if (patch === null) return null;
  if (Array.isArray(patch)) {
    const mk = MERGE_KEYS[key];
    if (!mk || !Array.isArray(base)) return structuredClone(patch);
    const out = structuredClone(base) as JsonObject[];
    for (const item of patch as JsonObject[]) {
      if (item && typeof item === "object" && Object.keys(item).some((k) => k.startsWith("$"))) {
        throw new Error(`strategic-merge directives ($patch, ...) are not supported by this test helper`);
      }
      const i = out.findIndex((e) => e[mk] === item[mk]);
      if (i >= 0) out[i] = strategicMerge(out[i]!, item, "") as JsonObject;
      else out.push(structuredClone(item));
    }
    return out;
  }
  if (typeof patch === "object") {
    const out: JsonObject = base && typeof base === "object" && !Array.isArray(base) ? structuredClone(base) : {};
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith("$")) throw new Error(`strategic-merge directive ${k} is not supported by this test helper`);
      if (v === null) delete out[k];
      else out[k] = strategicMerge(out[k] ?? null, v, k);
    }
    return out;
  }
  return patch;
}

interface Op {
  op: "add" | "remove" | "replace" | "test";
  path: string;
  value?: Json;
}

function applyJson6902(doc: Json, ops: Op[]): Json {
  const root = structuredClone(doc);
  for (const op of ops) {
    const parts = op.path
      .split("/")
      .slice(1)
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = parts.pop()!;
    let parent: Json = root;
    for (const p of parts) {
      parent = Array.isArray(parent) ? parent[Number(p)]! : (parent as JsonObject)[p]!;
      if (parent === undefined || parent === null) throw new Error(`JSON 6902 path not found: ${op.path}`);
    }
    if (Array.isArray(parent)) {
      const i = last === "-" ? parent.length : Number(last);
      if (op.op === "add") parent.splice(i, 0, structuredClone(op.value!));
      else if (op.op === "remove") parent.splice(i, 1);
      else if (op.op === "replace") parent[i] = structuredClone(op.value!);
      else if (JSON.stringify(parent[i]) !== JSON.stringify(op.value))
        throw new Error(`JSON 6902 test failed at ${op.path}`);
    } else {
      const obj = parent as JsonObject;
      if ((op.op === "remove" || op.op === "replace") && !(last in obj))
        throw new Error(`JSON 6902 path not found: ${op.path}`);
      if (op.op === "add" || op.op === "replace") obj[last] = structuredClone(op.value!);
      else if (op.op === "remove") delete obj[last];
      else if (JSON.stringify(obj[last]) !== JSON.stringify(op.value))
        throw new Error(`JSON 6902 test failed at ${op.path}`);
    }
  }
  return root;
}
