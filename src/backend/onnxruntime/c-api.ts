import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

/**
 * onnxruntime's C API, called through koffi (a foreign-function interface) on the very library
 * onnxruntime-node ships and has already loaded.
 *
 * Why not the node binding: its `run` copies every output into a new, zero-filled ArrayBuffer,
 * even when the caller supplies the output arrays: some 740 MiB of results a ResNet-18 training
 * step, and about 10% of its time. Here every input and output is an OrtValue over the caller's
 * own array: onnxruntime reads and writes them in place.
 *
 * Only functions of the API's first versions are used, by their fixed slots in the OrtApi table
 * (onnxruntime only ever appends to it). The slots were checked against 1.23.2's header, which
 * onnxruntime-node 1.23.2 ships the library of; older versions are untested.
 */

/** A dense tensor in row-major order whose memory onnxruntime reads or writes in place. */
export interface CTensor {
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array;
  shape: readonly number[];
}

/** Session settings (the ones fgh's kernels use). */
export interface CSessionSettings {
  intraOpThreads: number;
  /** Per-session arena and memory pattern: off for fgh's hundreds of small sessions. */
  memArena: boolean;
  memPattern: boolean;
  /** Session configuration entries, e.g. session.intra_op.allow_spinning. */
  config: Record<string, string>;
}

/** The API version requested: 14 is onnxruntime 1.14, whose table already holds every slot below. */
const API_VERSION = 14;

/** Slots in OrtApi (onnxruntime_c_api.h; checked against 1.23.2's header). */
const SLOT = {
  GetErrorMessage: 2,
  CreateEnv: 3,
  CreateSessionFromArray: 8,
  Run: 9,
  CreateSessionOptions: 10,
  SetSessionExecutionMode: 13,
  DisableMemPattern: 17,
  EnableCpuMemArena: 18,
  DisableCpuMemArena: 19,
  SetSessionGraphOptimizationLevel: 23,
  SetIntraOpNumThreads: 24,
  SetInterOpNumThreads: 25,
  CreateTensorWithDataAsOrtValue: 49,
  CreateCpuMemoryInfo: 69,
  ReleaseStatus: 93,
  ReleaseSession: 95,
  ReleaseValue: 96,
  ReleaseSessionOptions: 100,
  AddSessionConfigEntry: 130,
} as const;
const TABLE_SIZE = 131;

/** ONNXTensorElementDataType of each array type. */
const ELEMENT_TYPE = new Map<Function, number>([
  [Float32Array, 1],
  [Uint8Array, 9], // bool: one byte each
  [Int32Array, 6],
  [BigInt64Array, 7],
]);

const ORT_LOGGING_LEVEL_WARNING = 2;
const ORT_SEQUENTIAL = 0;
const ORT_ENABLE_ALL = 99;
const OrtDeviceAllocator = 0;
const OrtMemTypeDefault = 0;

/** An opaque C pointer as koffi hands it over. */
type Pointer = unknown;
type Status = Pointer | null;
type Out = [Pointer | null];

interface Functions {
  GetErrorMessage(status: Pointer): string;
  CreateEnv(level: number, id: string, out: Out): Status;
  CreateSessionFromArray(env: Pointer, data: Uint8Array, length: number, options: Pointer, out: Out): Status;
  Run(session: Pointer, runOptions: null, inputNames: string[], inputs: Pointer[], inputCount: number, outputNames: string[], outputCount: number, outputs: Pointer[]): Status;
  CreateSessionOptions(out: Out): Status;
  SetSessionExecutionMode(options: Pointer, mode: number): Status;
  DisableMemPattern(options: Pointer): Status;
  EnableCpuMemArena(options: Pointer): Status;
  DisableCpuMemArena(options: Pointer): Status;
  SetSessionGraphOptimizationLevel(options: Pointer, level: number): Status;
  SetIntraOpNumThreads(options: Pointer, n: number): Status;
  SetInterOpNumThreads(options: Pointer, n: number): Status;
  CreateTensorWithDataAsOrtValue(info: Pointer, data: CTensor['data'], bytes: number, shape: BigInt64Array, rank: number, type: number, out: Out): Status;
  CreateCpuMemoryInfo(allocator: number, memType: number, out: Out): Status;
  ReleaseStatus(status: Pointer): void;
  ReleaseSession(session: Pointer): void;
  ReleaseValue(value: Pointer): void;
  ReleaseSessionOptions(options: Pointer): void;
  AddSessionConfigEntry(options: Pointer, key: string, value: string): Status;
}

const PROTOTYPES: Record<keyof Functions, string> = {
  GetErrorMessage: 'const char *GetErrorMessage(OrtPtr status)',
  CreateEnv: 'OrtPtr CreateEnv(int level, const char *logid, _Out_ OrtPtr *out)',
  CreateSessionFromArray: 'OrtPtr CreateSessionFromArray(OrtPtr env, const void *data, size_t length, OrtPtr options, _Out_ OrtPtr *out)',
  Run: 'OrtPtr Run(OrtPtr session, OrtPtr runOptions, const char **inputNames, OrtPtr *inputs, size_t inputCount, const char **outputNames, size_t outputCount, OrtPtr *outputs)',
  CreateSessionOptions: 'OrtPtr CreateSessionOptions(_Out_ OrtPtr *out)',
  SetSessionExecutionMode: 'OrtPtr SetSessionExecutionMode(OrtPtr options, int mode)',
  DisableMemPattern: 'OrtPtr DisableMemPattern(OrtPtr options)',
  EnableCpuMemArena: 'OrtPtr EnableCpuMemArena(OrtPtr options)',
  DisableCpuMemArena: 'OrtPtr DisableCpuMemArena(OrtPtr options)',
  SetSessionGraphOptimizationLevel: 'OrtPtr SetSessionGraphOptimizationLevel(OrtPtr options, int level)',
  SetIntraOpNumThreads: 'OrtPtr SetIntraOpNumThreads(OrtPtr options, int n)',
  SetInterOpNumThreads: 'OrtPtr SetInterOpNumThreads(OrtPtr options, int n)',
  CreateTensorWithDataAsOrtValue: 'OrtPtr CreateTensorWithDataAsOrtValue(OrtPtr info, void *data, size_t bytes, const int64_t *shape, size_t rank, int type, _Out_ OrtPtr *out)',
  CreateCpuMemoryInfo: 'OrtPtr CreateCpuMemoryInfo(int allocator, int memType, _Out_ OrtPtr *out)',
  ReleaseStatus: 'void ReleaseStatus(OrtPtr status)',
  ReleaseSession: 'void ReleaseSession(OrtPtr session)',
  ReleaseValue: 'void ReleaseValue(OrtPtr value)',
  ReleaseSessionOptions: 'void ReleaseSessionOptions(OrtPtr options)',
  AddSessionConfigEntry: 'OrtPtr AddSessionConfigEntry(OrtPtr options, const char *key, const char *value)',
};

interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
  opaque(): unknown;
  pointer(name: string, type: unknown): unknown;
  proto(signature: string): unknown;
  array(type: string, length: number): unknown;
  decode(pointer: unknown, type: unknown): unknown;
}

/** The onnxruntime shared library next to onnxruntime-node's binding for this platform. */
function libraryPath(require: NodeJS.Require): string {
  const root = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const bin = path.join(root, 'bin');
  const napi = fs.readdirSync(bin).filter((d) => d.startsWith('napi-v'));
  for (const dir of napi) {
    const folder = path.join(bin, dir, process.platform, process.arch);
    if (!fs.existsSync(folder)) continue;
    const lib = fs.readdirSync(folder).find((f) => /^(lib)?onnxruntime\.(so\.\d+|\d[\d.]*\.dylib|dll)$/.test(f));
    if (lib) return path.join(folder, lib);
  }
  throw new Error(`no onnxruntime library for ${process.platform}/${process.arch} under ${bin}`);
}

let loaded: OrtCApi | Error | undefined;

export class OrtCApi {
  private constructor(
    private readonly f: Functions,
    private readonly env: Pointer,
    private readonly cpu: Pointer,
  ) {}

  /**
   * Binds the C API of onnxruntime-node's library (call after the binding itself has loaded, so
   * that both share one library and one environment). Throws with the reason where it cannot.
   */
  static load(): OrtCApi {
    if (loaded === undefined) {
      try {
        loaded = OrtCApi.bind();
      } catch (e) {
        loaded = e instanceof Error ? e : new Error(String(e));
      }
    }
    if (loaded instanceof Error) throw loaded;
    return loaded;
  }

  private static bind(): OrtCApi {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as Koffi;
    const lib = koffi.load(libraryPath(require));
    // Every handle (environment, session, value, status) as one opaque pointer type.
    koffi.pointer('OrtPtr', koffi.opaque());
    const getBase = lib.func('void *OrtGetApiBase()');
    const base = getBase();
    const baseSlots = koffi.decode(base, koffi.array('void *', 2)) as unknown[];
    const getApi = koffi.decode(baseSlots[0], koffi.proto('void *OrtGetApi(uint32_t version)')) as (v: number) => unknown;
    const api = getApi(API_VERSION);
    if (!api) throw new Error(`this onnxruntime does not offer C API version ${API_VERSION}`);
    const table = koffi.decode(api, koffi.array('void *', TABLE_SIZE)) as unknown[];
    const f = {} as Record<string, unknown>;
    for (const [name, signature] of Object.entries(PROTOTYPES)) {
      f[name] = koffi.decode(table[SLOT[name as keyof Functions]], koffi.proto(signature));
    }
    const fns = f as unknown as Functions;
    const out: Out = [null];
    check(fns, fns.CreateEnv(ORT_LOGGING_LEVEL_WARNING, 'fgh', out), 'CreateEnv');
    const env = out[0];
    check(fns, fns.CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, out), 'CreateCpuMemoryInfo');
    return new OrtCApi(fns, env, out[0]);
  }

  /** A session for the serialised model `bytes`. */
  createSession(bytes: Uint8Array, s: CSessionSettings): CSession {
    const f = this.f;
    const out: Out = [null];
    check(f, f.CreateSessionOptions(out), 'CreateSessionOptions');
    const options = out[0];
    try {
      check(f, f.SetIntraOpNumThreads(options, s.intraOpThreads), 'SetIntraOpNumThreads');
      check(f, f.SetInterOpNumThreads(options, 1), 'SetInterOpNumThreads');
      check(f, f.SetSessionExecutionMode(options, ORT_SEQUENTIAL), 'SetSessionExecutionMode');
      check(f, f.SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL), 'SetSessionGraphOptimizationLevel');
      check(f, s.memArena ? f.EnableCpuMemArena(options) : f.DisableCpuMemArena(options), 'CpuMemArena');
      if (!s.memPattern) check(f, f.DisableMemPattern(options), 'DisableMemPattern');
      for (const [k, v] of Object.entries(s.config)) check(f, f.AddSessionConfigEntry(options, k, v), `AddSessionConfigEntry ${k}`);
      check(f, f.CreateSessionFromArray(this.env, bytes, bytes.byteLength, options, out), 'CreateSessionFromArray');
    } finally {
      f.ReleaseSessionOptions(options);
    }
    return new CSession(f, this.cpu, out[0]);
  }
}

export class CSession {
  private released = false;

  constructor(
    private readonly f: Functions,
    private readonly cpu: Pointer,
    private readonly session: Pointer,
  ) {}

  /**
   * Runs the session: reads `inputs` and writes each output into the array given for it, whose
   * type and shape must be the graph's.
   */
  run(inputNames: string[], inputs: readonly CTensor[], outputNames: string[], outputs: readonly CTensor[]): void {
    if (this.released) throw new Error('onnxruntime session used after release');
    const ins: Pointer[] = [];
    const outs: Pointer[] = [];
    try {
      for (const t of inputs) ins.push(this.value(t));
      for (const t of outputs) outs.push(this.value(t));
      check(this.f, this.f.Run(this.session, null, inputNames, ins, ins.length, outputNames, outs.length, outs), 'Run');
    } finally {
      for (const v of ins) this.f.ReleaseValue(v);
      for (const v of outs) this.f.ReleaseValue(v);
    }
  }

  /** An OrtValue over `t`'s own memory (valid while `t` is, and released right after the run). */
  private value(t: CTensor): Pointer {
    const type = ELEMENT_TYPE.get(t.data.constructor);
    if (type === undefined) throw new Error(`onnxruntime: unsupported array ${t.data.constructor.name}`);
    // A small typed array may keep its elements inside the garbage-collected heap, where they can
    // move between this call and the run; asking for its buffer moves them out for good.
    void t.data.buffer;
    const out: Out = [null];
    const shape = BigInt64Array.from(t.shape, (d) => BigInt(d));
    check(this.f, this.f.CreateTensorWithDataAsOrtValue(this.cpu, t.data, t.data.byteLength, shape, shape.length, type, out), 'CreateTensorWithDataAsOrtValue');
    return out[0];
  }

  dispose(): void {
    if (this.released) return;
    this.released = true;
    this.f.ReleaseSession(this.session);
  }
}

/** Throws onnxruntime's message for a non-null status (and frees the status). */
function check(f: Functions, status: Status, what: string): void {
  if (!status) return;
  const message = f.GetErrorMessage(status);
  f.ReleaseStatus(status);
  throw new Error(`${what}: ${message}`);
}
