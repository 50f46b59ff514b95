/** A sequence's sampling cannot go on: the model gave no usable output for it (non-finite
 * logits or NF head). The engine fails that sequence alone; the batch goes on. */
export class SamplingError extends Error {}
