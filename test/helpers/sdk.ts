import OpenAI from "openai";

/** The official npm SDK pointed at a test server: no retries, so a failure shows at once. */
export function sdkClient(serverUrl: string, apiKey = "unused"): OpenAI {
  return new OpenAI({ baseURL: `${serverUrl}/v1`, apiKey, maxRetries: 0 });
}
