/** What the page's last search found; the end-to-end test reads it from `window.fgh.last`. */
export interface SearchOutcome {
  file: string;
  /** The query's packed code as hex, as the graph computed it. */
  code: string;
  /** The graph's continuous outputs (tanh), before the sign. */
  features: number[];
  ids: string[];
  distances: number[];
  /** Milliseconds per step: decode, preprocess, inference, search. */
  timings: Record<string, number>;
  /** Execution provider used: webgpu or wasm. */
  ep: string;
}
