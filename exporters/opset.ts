/** Opsets we emit and their IR versions: apart from the writer so the CLI and the model reader need no protobufjs for them. */
export const MIN_OPSET = 13;
export const MAX_OPSET = 21;
export const DEFAULT_OPSET = 17;

/** The lowest IR version each opset needs (onnx's own version table). */
export function irVersionFor(opset: number): number {
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new RangeError(`opset ${opset} is not supported (${MIN_OPSET}..${MAX_OPSET})`);
  }
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}
