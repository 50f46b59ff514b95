"""Schemathesis hooks for test/reliability/schema-fuzz.test.ts: a stricter form of the built-in
positive_data_acceptance check (which is excluded there).

A request the document calls valid must be served. The only refusals allowed are the ones no JSON
Schema can state, each named here with the error code the server gives:
  - 400 context_length_exceeded: prompts are limited in tokens (the document says so in prose);
  - 429 queue_full: the server is at capacity (a state, not a property of the request);
  - 404 model_not_found on GET /v1/models/{model}: a lookup by name;
  - 400 invalid_request naming min_tokens (above max_tokens, or above what fits in the context),
    logit_bias (a token id outside the vocabulary) or the completion budget (max_tokens,
    max_completion_tokens, max_output_tokens below K + 1 for a latent request: the thoughts
    count): a comparison with another field, the mode or the vocabulary size, stated in prose;
  - 400 invalid_request naming a reasoning item's encrypted_content: an opaque payload that only
    the server makes (as OpenAI's), so no schema can generate a valid one.
Everything else, 404 included, fails the run."""

import json
import os

import schemathesis


def ctx_key():
    return os.environ.get("NFCOT_FUZZ_KEY", "")

ALLOWED = {
    (400, "context_length_exceeded"),
    (429, "queue_full"),
}
PROSE_PARAMS = {"min_tokens", "logit_bias", "max_tokens", "max_completion_tokens", "max_output_tokens"}


@schemathesis.check
def documented_valid_requests_are_served(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status < 400 or status >= 500:  # 5xx: not_a_server_error reports it
        return None
    sent = {k.lower(): v for k, v in response.request.headers.items()}
    if status == 401 and sent.get("authorization") != f"Bearer {ctx_key()}":
        # Sent without the key, or with a generated one (security is documented): 401 is right.
        return None
    try:
        error = json.loads(response.content)["error"]
        code, param = error["code"], error.get("param")
    except Exception:  # noqa: BLE001 - a non-JSON error body is itself a failure
        code, param = None, None
    if (status, code) in ALLOWED:
        return None
    if status == 400 and code == "invalid_request" and param in PROSE_PARAMS:
        return None
    if status == 400 and code == "invalid_request" and str(param).endswith(".encrypted_content"):
        return None
    if status == 404 and code == "model_not_found" and case.operation.path == "/v1/models/{model}":
        return None
    raise AssertionError(f"A request the document calls valid was refused: {status} {code}: {response.text[:300]}")
