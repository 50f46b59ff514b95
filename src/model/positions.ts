/** The token-id slot of a thought position: a prompt's ids hold THOUGHT where a thought vector
 * goes (the vectors travel beside the ids, in order). Never a real token id. Defined here so
 * src/model (prompts) and src/engine (sequences) share it without src/model importing the engine. */
export const THOUGHT = -1;
