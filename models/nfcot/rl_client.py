"""The RL loop's HTTP side: rollouts through the server's chat completions (latent mode, n = the
group size, thoughts with vectors and log-probs) and weight pushes through its admin route.
Standard library only (urllib); requests of one batch go out together so the server batches them."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


class ServerError(RuntimeError):
    pass


class Server:
    def __init__(self, url: str, admin_key: str | None = None, timeout: float = 600.0, parallel: int = 16):
        self.url = url.rstrip("/")
        self.admin_key = admin_key
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(parallel)
        self.model = self._get("/v1/models")["data"][0]["id"]

    def _call(self, method: str, path: str, body: dict | None = None, key: str | None = None) -> tuple[dict, dict]:
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.load(r), dict(r.headers)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise ServerError(f"{method} {path}: HTTP {e.code}: {detail}") from None

    def _get(self, path: str, key: str | None = None) -> dict:
        return self._call("GET", path, key=key)[0]

    def chat(self, source: str, mode: str, n: int, seed: int, latent_temperature: float, text_temperature: float,
             max_tokens: int, vectors: bool = True) -> dict:
        body = {"model": self.model, "messages": [{"role": "user", "content": source}], "n": n, "seed": seed,
                "temperature": text_temperature, "max_tokens": max_tokens, "logprobs": True,
                # Token ids, not texts: a special token sampled at text temperature 1 has empty text.
                "return_tokens_as_token_ids": True,
                "reasoning": {"mode": mode, "latent_temperature": latent_temperature, "return_thoughts": vectors}}
        out, headers = self._call("POST", "/v1/chat/completions", body)
        # The header and the body must agree: both name the weights that ran the request.
        if headers.get("x-weights-version") != out.get("weights_version"):
            raise ServerError(f"weights version header {headers.get('x-weights-version')} != body {out.get('weights_version')}")
        return out

    def chat_many(self, jobs: list[dict]) -> list[dict]:
        return list(self.pool.map(lambda j: self.chat(**j), jobs))

    def weights(self) -> dict:
        return self._get("/admin/weights", key=self.admin_key)

    def push(self, model_dir: str, version: str) -> dict:
        if not self.admin_key:
            raise ServerError("pushing weights needs the server's admin key (--admin-key or NFCOT_ADMIN_KEY)")
        return self._call("POST", "/admin/weights", {"model_dir": model_dir, "version": version}, key=self.admin_key)[0]
