/** Opsets we emit: apart from the writer so the CLI can check --opset without loading protobufjs. */
export const MIN_OPSET = 13;
export const MAX_OPSET = 21;
export const DEFAULT_OPSET = 17;
