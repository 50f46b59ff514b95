/** Typed error codes, mapped once to HTTP status and OpenAI error type; the code also labels the
 * failure metric. */

export const ERROR_CODES = {
  invalid_request: { status: 400, type: "invalid_request_error" },
  context_length_exceeded: { status: 400, type: "invalid_request_error" },
  // A parameter this server or model cannot honour (tools without template support, structured
  // output, ...): refused rather than silently ignored; `param` names it.
  unsupported_parameter: { status: 400, type: "invalid_request_error" },
  invalid_api_key: { status: 401, type: "authentication_error" },
  invalid_admin_key: { status: 401, type: "authentication_error" },
  conflict: { status: 409, type: "invalid_request_error" },
  model_load_failed: { status: 422, type: "invalid_request_error" },
  model_not_found: { status: 404, type: "invalid_request_error" },
  not_found: { status: 404, type: "invalid_request_error" },
  method_not_allowed: { status: 405, type: "invalid_request_error" },
  payload_too_large: { status: 413, type: "invalid_request_error" },
  unsupported_media_type: { status: 415, type: "invalid_request_error" },
  expectation_failed: { status: 417, type: "invalid_request_error" },
  queue_full: { status: 429, type: "rate_limit_error" },
  request_timeout: { status: 408, type: "timeout_error" },
  // nginx's 499: the client went away first. An abort (counted by finish reason), not a failure.
  client_closed_request: { status: 499, type: "client_closed_request" },
  not_ready: { status: 503, type: "service_unavailable" },
  shutting_down: { status: 503, type: "service_unavailable" },
  engine_error: { status: 500, type: "server_error" },
  internal_error: { status: 500, type: "server_error" },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ServeError extends Error {
  readonly code: ErrorCode;
  readonly param: string | null;
  readonly retryAfterSeconds: number | null;

  constructor(code: ErrorCode, message: string, param: string | null = null, retryAfterSeconds: number | null = null) {
    super(message);
    this.code = code;
    this.param = param;
    this.retryAfterSeconds = retryAfterSeconds;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: ERROR_CODES[this.code].type, param: this.param, code: this.code } };
  }
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}
