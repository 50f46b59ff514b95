/** A position holds a token id, or THOUGHT with its vector stored beside it. Its own file: the
 * runner (which feeds positions to the graph) and the sequence (which stores them) both read it,
 * and neither layer imports the other. */
export const THOUGHT = -1;
