/**
 * A restricted unpickler for PyTorch state dicts. It understands the pickle opcodes that
 * `torch.save` emits for a dict of tensors and resolves only a fixed list of globals (OrderedDict,
 * torch's tensor rebuild functions and storage classes) to inert descriptions. It never imports,
 * calls or constructs anything named by the file: any other opcode or global is refused with a
 * one-line error, so a weights file cannot run code.
 */
import { FghError } from '../util/errors.js';

/** Element types of PyTorch storages (and safetensors), by PyTorch's name. */
export type TorchDtype = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export const DTYPE_BYTES: Readonly<Record<TorchDtype, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** A storage class named in a pickle (`torch.FloatStorage`); only ever used as a type tag. */
export class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: TorchDtype,
  ) {}
}

/** A storage that lives outside the pickle, as resolved from a persistent id by the file reader. */
export class StorageRef {
  constructor(
    /** The file's key for the underlying (root) storage. */
    readonly key: string,
    readonly dtype: TorchDtype,
    /** First element of this storage within the root storage (legacy storage views), else 0. */
    readonly base: number,
    /** Elements available from `base`. */
    readonly numel: number,
  ) {}
}

/** A tensor as `_rebuild_tensor(_v2)` describes it: a strided view of a storage, in elements. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

export type DictKey = string | number | bigint | boolean | null;

/** A Python dict or OrderedDict, in insertion order. `attributes` is the BUILD state (`_metadata`). */
export class PickleDict {
  readonly items = new Map<DictKey, PickleValue>();
  attributes: PickleDict | null = null;
}

/** One of the allowed callables; REDUCE applies `call` to the argument tuple. */
export class PickleCallable {
  constructor(
    readonly qualname: string,
    readonly call: (args: readonly PickleValue[], ctx: ReduceContext) => PickleValue,
  ) {}
}

/**
 * Values an allowed pickle can produce. Lists are mutable arrays; tuples are frozen arrays.
 */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly PickleValue[]
  | PickleDict
  | StorageType
  | StorageRef
  | TensorRef
  | PickleCallable;

export interface UnpickleOptions {
  /** Prefix of error messages (usually the file name). */
  source: string;
  /** Resolves a persistent id (BINPERSID); without it, persistent ids are refused. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
}

export interface UnpickleResult {
  value: PickleValue;
  /** Byte just after the STOP opcode: where the next pickle of a multi-pickle file starts. */
  end: number;
}

export interface ReduceContext {
  fail(message: string): never;
}

const STORAGE_TYPES: ReadonlyArray<[string, TorchDtype]> = [
  ['FloatStorage', 'float32'],
  ['DoubleStorage', 'float64'],
  ['HalfStorage', 'float16'],
  ['BFloat16Storage', 'bfloat16'],
  ['LongStorage', 'int64'],
  ['IntStorage', 'int32'],
  ['ShortStorage', 'int16'],
  ['CharStorage', 'int8'],
  ['ByteStorage', 'uint8'],
  ['BoolStorage', 'bool'],
];

function ints(v: PickleValue, what: string, ctx: ReduceContext): number[] {
  if (!Array.isArray(v)) ctx.fail(`${what} must be a tuple of ints, got ${describe(v)}`);
  const arr = v as readonly PickleValue[];
  return arr.map((x) => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) ctx.fail(`${what} must hold non-negative ints, got ${describe(x)}`);
    return x;
  });
}

function rebuildTensor(args: readonly PickleValue[], ctx: ReduceContext, name: string, arity: number[]): TensorRef {
  if (!arity.includes(args.length)) ctx.fail(`${name} expects ${arity.join(' or ')} arguments, got ${args.length}`);
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) ctx.fail(`${name}: first argument must be a storage, got ${describe(storage!)}`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) ctx.fail(`${name}: bad storage offset ${describe(offset!)}`);
  const shape = ints(size!, `${name}: size`, ctx);
  const strides = ints(stride!, `${name}: stride`, ctx);
  if (shape.length !== strides.length) ctx.fail(`${name}: size [${shape}] and stride [${strides}] differ in length`);
  return new TensorRef(storage, offset, shape, strides);
}

/** The only globals a weights file may name, as inert stand-ins. */
const ALLOWED_GLOBALS: ReadonlyMap<string, PickleValue> = new Map<string, PickleValue>([
  [
    'collections.OrderedDict',
    new PickleCallable('collections.OrderedDict', (args, ctx) => {
      // OrderedDict.__reduce__ gives no arguments; the items follow as SETITEMS.
      if (args.length !== 0) ctx.fail('collections.OrderedDict called with arguments');
      return new PickleDict();
    }),
  ],
  ['torch._utils._rebuild_tensor_v2', new PickleCallable('torch._utils._rebuild_tensor_v2', (a, ctx) => rebuildTensor(a, ctx, '_rebuild_tensor_v2', [6, 7]))],
  // PyTorch < 0.4 (e.g. torchvision's 2017 model zoo files): storage, offset, size, stride.
  ['torch._utils._rebuild_tensor', new PickleCallable('torch._utils._rebuild_tensor', (a, ctx) => rebuildTensor(a, ctx, '_rebuild_tensor', [4]))],
  [
    'torch._utils._rebuild_parameter',
    new PickleCallable('torch._utils._rebuild_parameter', (args, ctx) => {
      if (args.length !== 3 || !(args[0] instanceof TensorRef)) ctx.fail('_rebuild_parameter expects (tensor, requires_grad, hooks)');
      return args[0]!;
    }),
  ],
  ...STORAGE_TYPES.map(([name, dtype]): [string, PickleValue] => [`torch.${name}`, new StorageType(name, dtype)]),
  // Saved from a GPU: the bytes are the same, only the device tag differs (it is ignored).
  ...STORAGE_TYPES.map(([name, dtype]): [string, PickleValue] => [`torch.cuda.${name}`, new StorageType(`cuda.${name}`, dtype)]),
]);

/** Names of opcodes this unpickler refuses, so that the error says which one it met. */
const REFUSED_OPCODES: Readonly<Record<number, string>> = {
  0x49: 'INT',
  0x4c: 'LONG',
  0x53: 'STRING',
  0x56: 'UNICODE',
  0x46: 'FLOAT',
  0x50: 'PERSID',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x67: 'GET',
  0x70: 'PUT',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
  0x8e: 'BINBYTES8',
};

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x80: 'PROTO',
  0x95: 'FRAME',
  0x2e: 'STOP',
  0x28: 'MARK',
  0x7d: 'EMPTY_DICT',
  0x5d: 'EMPTY_LIST',
  0x29: 'EMPTY_TUPLE',
  0x64: 'DICT',
  0x6c: 'LIST',
  0x74: 'TUPLE',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x58: 'BINUNICODE',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4d: 'BININT2',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x47: 'BINFLOAT',
  0x4e: 'NONE',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x73: 'SETITEM',
  0x75: 'SETITEMS',
  0x61: 'APPEND',
  0x65: 'APPENDS',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x94: 'MEMOIZE',
  0x68: 'BINGET',
  0x6a: 'LONG_BINGET',
  0x63: 'GLOBAL',
  0x93: 'STACK_GLOBAL',
  0x52: 'REDUCE',
  0x62: 'BUILD',
  0x51: 'BINPERSID',
};

/** A short Python-ish type name for error messages. */
export function describe(v: PickleValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof PickleDict) return 'dict';
  if (v instanceof StorageType) return `torch.${v.name}`;
  if (v instanceof StorageRef) return 'storage';
  if (v instanceof TensorRef) return 'tensor';
  if (v instanceof PickleCallable) return v.qualname;
  return 'object';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads one pickle starting at `start`. Throws FghError for anything outside the allowed subset,
 * for truncation, and for malformed streams.
 */
export function unpickle(buf: Uint8Array, start: number, opts: UnpickleOptions): UnpickleResult {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: PickleValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = start;
  let opStart = start;
  let opName = '';

  const fail: (message: string) => never = (message) => {
    throw new FghError(`${opts.source}: ${message}`);
  };
  const refuse: (what: string) => never = (what) => {
    throw new FghError(`${opts.source}: refusing to load: ${what}; weights files may only contain tensors`);
  };
  const ctx: ReduceContext = { fail: (m) => fail(`bad pickle at byte ${opStart}: ${m}`) };
  const need = (n: number): void => {
    if (pos + n > buf.length) fail(`truncated: pickle ends inside ${opName} at byte ${opStart} (needs ${n} more bytes, ${buf.length - pos} left)`);
  };
  const u8 = (): number => {
    need(1);
    return buf[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`bad pickle: length ${v} at byte ${opStart}`);
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const text = (n: number): string => {
    const b = bytes(n);
    try {
      return utf8.decode(b);
    } catch {
      return fail(`bad pickle: invalid UTF-8 in ${opName} at byte ${opStart}`);
    }
  };
  const latin1 = (n: number): string => {
    const b = bytes(n);
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  };
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail(`truncated: pickle ends inside ${opName} at byte ${opStart}`);
    const s = latin1(end - pos);
    pos = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1]!)) fail(`bad pickle: stack underflow at ${opName}, byte ${opStart}`);
    return stack.pop()!;
  };
  const top = (): PickleValue => {
    if (stack.length === 0) fail(`bad pickle: empty stack at ${opName}, byte ${opStart}`);
    return stack[stack.length - 1]!;
  };
  const popMark = (): PickleValue[] => {
    if (!marks.length) fail(`bad pickle: ${opName} without MARK at byte ${opStart}`);
    return stack.splice(marks.pop()!);
  };
  const tuple = (items: PickleValue[]): readonly PickleValue[] => Object.freeze(items);
  const long = (n: number): number | bigint => {
    // State dicts need at most 10 bytes (the legacy magic number); huge ints only cost time.
    if (n > 64) fail(`bad pickle: ${n}-byte integer at byte ${opStart}`);
    const b = bytes(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const dictKey = (k: PickleValue): DictKey => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return k;
    return fail(`bad pickle: unsupported dict key of type ${describe(k)} at byte ${opStart}`);
  };
  const setItems = (d: PickleValue, kv: PickleValue[]): void => {
    if (!(d instanceof PickleDict)) fail(`bad pickle: ${opName} on ${describe(d)} at byte ${opStart}`);
    if (kv.length % 2) fail(`bad pickle: odd number of items for ${opName} at byte ${opStart}`);
    for (let i = 0; i < kv.length; i += 2) (d as PickleDict).items.set(dictKey(kv[i]!), kv[i + 1]!);
  };
  const appendTo = (l: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(l) || Object.isFrozen(l)) fail(`bad pickle: ${opName} on ${describe(l)} at byte ${opStart}`);
    (l as PickleValue[]).push(...items);
  };
  const global = (module: string, name: string): PickleValue => {
    const g = ALLOWED_GLOBALS.get(`${module}.${name}`);
    if (g === undefined) refuse(`pickle references ${module}.${name}`);
    return g!;
  };

  for (;;) {
    opStart = pos;
    if (pos >= buf.length) fail(pos === start ? `truncated: no pickle at byte ${start}` : `truncated: pickle has no STOP (file ends at byte ${buf.length})`);
    const op = buf[pos++]!;
    opName = OPCODE_NAMES[op] ?? REFUSED_OPCODES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
    switch (op) {
      case 0x80: {
        const proto = u8();
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: only a buffering hint
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail(`bad pickle: STOP with ${stack.length} values on the stack at byte ${opStart}`);
        return { value: stack[0]!, end: pos };
      case 0x28:
        marks.push(stack.length);
        break;
      case 0x7d:
        stack.push(new PickleDict());
        break;
      case 0x5d:
        stack.push([]);
        break;
      case 0x29:
        stack.push(tuple([]));
        break;
      case 0x64: {
        const d = new PickleDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x6c:
        stack.push(popMark());
        break;
      case 0x74:
        stack.push(tuple(popMark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        const n = op - 0x84;
        const items: PickleValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(tuple(items));
        break;
      }
      case 0x58:
        stack.push(text(u32()));
        break;
      case 0x8c:
        stack.push(text(u8()));
        break;
      case 0x8d:
        stack.push(text(u64()));
        break;
      case 0x54: // Python 2 str: bytes, decoded as latin-1 like torch.load's default
        stack.push(latin1(u32()));
        break;
      case 0x55:
        stack.push(latin1(u8()));
        break;
      case 0x42:
        stack.push(Uint8Array.from(bytes(u32())));
        break;
      case 0x43:
        stack.push(Uint8Array.from(bytes(u8())));
        break;
      case 0x4a: {
        need(4);
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      }
      case 0x4b:
        stack.push(u8());
        break;
      case 0x4d:
        stack.push(u16());
        break;
      case 0x8a:
        stack.push(long(u8()));
        break;
      case 0x8b: {
        need(4);
        const n = view.getInt32(pos, true);
        pos += 4;
        if (n < 0) fail(`bad pickle: negative LONG4 length at byte ${opStart}`);
        stack.push(long(n));
        break;
      }
      case 0x47: {
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x61: {
        const v = pop();
        appendTo(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        appendTo(top(), items);
        break;
      }
      case 0x71:
        memo.set(u8(), top());
        break;
      case 0x72:
        memo.set(u32(), top());
        break;
      case 0x94:
        memo.set(memo.size, top());
        break;
      case 0x68:
      case 0x6a: {
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`bad pickle: memo ${i} is not set at byte ${opStart}`);
        stack.push(memo.get(i)!);
        break;
      }
      case 0x63: {
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail(`bad pickle: STACK_GLOBAL needs two strings at byte ${opStart}`);
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleCallable)) refuse(`pickle calls ${describe(fn)} (REDUCE at byte ${opStart})`);
        if (!Array.isArray(args)) fail(`bad pickle: REDUCE arguments are ${describe(args)} at byte ${opStart}`);
        stack.push((fn as PickleCallable).call(args as readonly PickleValue[], ctx));
        break;
      }
      case 0x62: {
        // Only OrderedDict's attribute dict (`_metadata` of state dicts) may be set.
        const state = pop();
        const target = top();
        if (!(target instanceof PickleDict) || !(state instanceof PickleDict)) refuse(`pickle sets the state of ${describe(target)} to ${describe(state)} (BUILD at byte ${opStart})`);
        (target as PickleDict).attributes = state as PickleDict;
        break;
      }
      case 0x51: {
        const pid = pop();
        if (!opts.persistentLoad) fail(`bad pickle: unexpected persistent id at byte ${opStart}`);
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      default:
        refuse(`pickle opcode ${opName} at byte ${opStart} is not allowed`);
    }
  }
}

/** A dict's string-keyed entries, failing on other key types. */
export function stringEntries(d: PickleDict, source: string): Array<[string, PickleValue]> {
  return [...d.items].map(([k, v]) => {
    if (typeof k !== 'string') throw new FghError(`${source}: state dict key ${String(k)} is not a string`);
    return [k, v];
  });
}
