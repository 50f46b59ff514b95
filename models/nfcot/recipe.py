"""Run a committed recipe: every stage that makes a model, in order, from one command.

  /usr/bin/python3 -m nfcot.recipe nfcot-trace-small          # the shipped model's chain
  /usr/bin/python3 -m nfcot.recipe rl-small --device cuda      # RL from the shipped model
  /usr/bin/python3 -m nfcot.recipe NAME --dry-run              # print the commands

A recipe is recipes/NAME.json: {"description", "stages": [{"name", "module", "args", "done",
"code"?, "serve"?}]}. Stages run as `python -m MODULE ARGS` from models/; a stage whose `done`
file exists and whose record in runs/recipes/NAME/manifest.json has the same argv is skipped, so
an interrupted recipe resumes at the stage it was in (that stage restarts). Placeholders in args:
{device}, {provenance} (a JSON file with the recipe, its sha256, every stage's argv and the
code's commit: the exporter merges it into the model's manifest), and for stages with "serve":
{server}, {admin_key} (the runner starts nfcot-serve on a free port on the `serve` model
directory with a fresh admin key, and stops it after the stage). "code": {"path": "COMMIT"}
runs the stage with those files taken from an older commit (stages that ran before a fix).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from .provenance import code_state

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(MODELS)
PYTHON = sys.executable or "/usr/bin/python3"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def load_recipe(name: str, recipes_dir: str) -> tuple[dict, str]:
    path = os.path.join(recipes_dir, f"{name}.json")
    if not os.path.exists(path):
        have = sorted(f[:-5] for f in os.listdir(recipes_dir) if f.endswith(".json"))
        raise SystemExit(f"no recipe {name!r} in {recipes_dir} (have: {', '.join(have)})")
    raw = open(path, "rb").read()
    recipe = json.loads(raw)
    names = [s["name"] for s in recipe["stages"]]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: stage names repeat")
    return recipe, hashlib.sha256(raw).hexdigest()


def overlay_code(state_dir: str, code: dict) -> str:
    """A copy of models/ with the listed files from older commits; returns its models/ dir."""
    key = hashlib.sha256(json.dumps(code, sort_keys=True).encode()).hexdigest()[:12]
    dst = os.path.join(state_dir, f"code-{key}")
    if not os.path.exists(dst):
        tmp = dst + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(os.path.join(MODELS, "nfcot"), os.path.join(tmp, "nfcot"))
        for path, commit in code.items():
            with open(os.path.join(tmp, path), "w") as f:
                f.write(git("show", f"{commit}:models/{path}"))
        os.rename(tmp, dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, log_path: str) -> tuple[subprocess.Popen, str, str]:
    if not os.path.exists(os.path.join(MODELS, model_dir, "manifest.json")):
        raise SystemExit(f"{model_dir} holds no model (no manifest.json): the stage that writes it made none; see its log")
    key, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "NFCOT_ADMIN_KEY": key}
    cmd = ["node", "--import", "tsx", "src/server.ts", "--model-dir", os.path.join(MODELS, model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warn"]
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log_path, "a"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if p.poll() is not None:
            raise SystemExit(f"the server exited while starting (code {p.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                if r.status == 200:
                    return p, url, key
        except OSError:
            pass
        time.sleep(0.5)
    p.terminate()
    raise SystemExit(f"the server did not become ready in 300 s; see {log_path}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--recipes", default=os.path.join(MODELS, "recipes"))
    ap.add_argument("--runs", default=os.path.join(MODELS, "runs"), help="where stage outputs and the recipe's state go")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    recipe, digest = load_recipe(args.name, args.recipes)
    state_dir = os.path.join(args.runs, "recipes", args.name)
    os.makedirs(state_dir, exist_ok=True)
    manifest_path = os.path.join(state_dir, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {"stages": {}}
    manifest.update(recipe=args.name, recipe_sha256=digest, device=args.device, runner_argv=sys.argv[1:] if argv is None else argv)
    manifest.setdefault("code_at_start", code_state())
    provenance = os.path.join(state_dir, "provenance.json")

    def save() -> None:
        with open(manifest_path + ".tmp", "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(manifest_path + ".tmp", manifest_path)

    for stage in recipe["stages"]:
        name = stage["name"]
        subst = {"device": args.device, "provenance": provenance, "server": "{server}", "admin_key": "{admin_key}"}
        argv_ = [a.format(**subst) for a in stage["args"]]
        rec = manifest["stages"].get(name)
        done = os.path.join(MODELS, stage["done"])
        if rec and rec.get("status") == "done" and rec.get("argv") == argv_ and os.path.exists(done):
            print(f"[{args.name}] {name}: done earlier, skipped", flush=True)
            continue
        cmd = [PYTHON, "-m", stage["module"], *argv_]
        print(f"[{args.name}] {name}: {' '.join(cmd)}", flush=True)
        if args.dry_run:
            continue
        cwd = MODELS
        if stage.get("code"):
            # The older files sit in a copy of nfcot/; paths in args stay relative to models/.
            cwd = overlay_code(state_dir, stage["code"])
            for link in ("runs", "data", "nfcot-trace-small", "recipes"):
                if not os.path.exists(os.path.join(cwd, link)):
                    os.symlink(os.path.join(MODELS, link), os.path.join(cwd, link))
        server = None
        log_path = os.path.join(state_dir, f"{name}.log")
        # Provenance as of this stage: what the exporter writes into a manifest.
        with open(provenance, "w") as f:
            json.dump({"recipe": {"name": args.name, "sha256": digest, "stage": name, "device": args.device,
                                  "stages": {k: v["argv"] for k, v in manifest["stages"].items()} | {name: argv_},
                                  **code_state()}}, f, indent=1)
        try:
            if stage.get("serve"):
                server, url, key = start_server(stage["serve"], log_path + ".server")
                cmd = [c.replace("{server}", url).replace("{admin_key}", key) for c in cmd]
            manifest["stages"][name] = {"argv": argv_, "status": "running", "started": time.time(), **code_state(),
                                        **({"code": stage["code"]} if stage.get("code") else {})}
            save()
            with open(log_path, "a") as log:
                p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for line in p.stdout:
                    sys.stdout.write(line)
                    log.write(line)
                code = p.wait()
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
        manifest["stages"][name].update(status="done" if code == 0 else "failed", exit_code=code, ended=time.time())
        save()
        if code != 0:
            raise SystemExit(f"[{args.name}] {name} failed (exit {code}); rerun the same command to resume here. Log: {log_path}")
        if not os.path.exists(done):
            raise SystemExit(f"[{args.name}] {name} exited 0 but did not write {stage['done']}")
    if not args.dry_run:
        print(f"[{args.name}] all {len(recipe['stages'])} stages done; record: {manifest_path}", flush=True)


if __name__ == "__main__":
    main()
