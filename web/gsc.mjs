// Decoder of the compact bitstream `bitstream.gsc` (format versions 2 and 3), written from
// docs/COMPACT_FORMAT.md. Plain ES module without dependencies: runs unchanged in Node.js >= 18
// and in browsers. `decodeGsc(bytes)` returns the decoded 3DGS model as typed arrays in the
// order and units of the Python decoder (`render.py --export_ply` writes the same values);
// every damaged or inconsistent input is refused with one `GscFormatError` naming the problem,
// and every count is checked against the file size before anything is allocated from it.

/**
 * @typedef {object} GscScene
 * @property {number} formatVersion 2 or 3.
 * @property {number} count N, the number of Gaussians.
 * @property {number} shDegree d, 0..3.
 * @property {number} quality the --quality level the file was written at (0: none).
 * @property {Float32Array} positions [3N] x, y, z (voxel centres).
 * @property {Float32Array} quaternions [4N] w, x, y, z (the PLY's rot_0..3; unit up to float32).
 * @property {Float32Array} logScales [3N] the PLY's scale_0..2.
 * @property {Float32Array} opacityLogits [N] the PLY's opacity.
 * @property {Float32Array} fDc [3N] the PLY's f_dc_0..2.
 * @property {Float32Array} fRest [N * 3 * ((d+1)^2 - 1)] the PLY's f_rest_* per Gaussian,
 *   channel-major (f_rest_{ch*((d+1)^2-1) + j-1} is SH coefficient j of channel ch).
 * @property {[number, number, number] | null} up the scene's up direction (format 3, from
 *   the training cameras), or null when unknown.
 */

/**
 * @typedef {object} DecodeOptions
 * @property {(fraction: number) => void} [onProgress] called with 0..1 as decoding advances.
 */

/** A bitstream that is corrupt, truncated or inconsistent; the message names the problem. */
export class GscFormatError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'GscFormatError';
  }
}

export const FORMAT_VERSIONS = Object.freeze([2, 3]);
const MAGIC = [0x47, 0x53, 0x43, 0x46]; // "GSCF"
const MAX_GAUSSIANS = 2 ** 26;
const MAX_CODEBOOK = 2 ** 16;
const MAX_FILE_BYTES = 2 ** 32;
const MAX_DEPTH = 21;
const EXPONENT_LIMIT = 96;
const MAX_CODE = 2 ** 24 - 1;
const COLUMNS = 10;
const SEGMENT_SHARE = 4;
const FIXED_HEADER = 17 + 48; // magic .. codebook exponent, bounding box
const UP_BYTES = 12;
const CRC_BYTES = 4;
// entropy streams (§2)
const MAX_ALPHABET = 2 ** 20;
const SYMBOL_LIMIT = 2 ** 30;
const MAX_LEVEL = 125;
const LEVEL_DELTA_M_CODE = 49152;
const M_SCALE = 65536;
const PRECISION_TOTAL = 2 ** 24; // constriction's DefaultContiguousCategoricalEntropyModel
const TWO32 = 4294967296;
// 2^(j/4), j = 0..3, exact float64 values (§2)
const QUARTER_POWERS = [1, 0x1306fe0a31b715 / 2 ** 52, 0x16a09e667f3bcd / 2 ** 52,
  0x1ae89f995ad3ad / 2 ** 52];

/** Exact 2^n (n integer, |n| <= 1000) by repeated doubling or halving. */
function pow2(n) {
  let value = 1;
  for (let i = 0; i < n; i++) value *= 2;
  for (let i = 0; i > n; i--) value /= 2;
  return value;
}

/** 2^(e/4) as the exact float64 of §2 (a power of two times one of four constants). */
function quarterPower(e) {
  const octave = Math.floor(e / 4);
  return QUARTER_POWERS[e - 4 * octave] * pow2(octave);
}

// ------------------------------------------------------------------------------ CRC-32

/** CRC_TABLE[256·k + byte]: the CRC of byte followed by k zero bytes (slicing by 4). */
const CRC_TABLE = (() => {
  const table = new Int32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  for (let i = 256; i < 4 * 256; i++) table[i] = (table[i - 256] >>> 8) ^ table[table[i - 256] & 0xff];
  return table;
})();

/**
 * CRC-32 (zlib / IEEE 802.3) of bytes[start, end), four bytes per step.
 * @param {Uint8Array} bytes @param {number} start @param {number} end
 */
export function crc32(bytes, start = 0, end = bytes.length) {
  let crc = -1;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    crc ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    crc = CRC_TABLE[768 + (crc & 0xff)] ^ CRC_TABLE[512 + ((crc >>> 8) & 0xff)]
      ^ CRC_TABLE[256 + ((crc >>> 16) & 0xff)] ^ CRC_TABLE[crc >>> 24];
  }
  for (; i < end; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

// ------------------------------------------------------------------------------ side bytes

/** Sequential bounds-checked reader of side bytes (varints, little-endian integers). */
class ByteReader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = bytes;
    this.position = 0;
  }

  /** One unsigned LEB128 varint, refused above `limit` (and when non-canonical). */
  varint(limit) {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (this.position >= this.bytes.length) throw new GscFormatError('truncated side information');
      const byte = this.bytes[this.position++];
      if (byte & 0x7f) value += (byte & 0x7f) * scale;
      if (value > limit) throw new GscFormatError(`side value ${value} above its limit ${limit}`);
      if (!(byte & 0x80)) {
        if (byte === 0 && scale > 1) throw new GscFormatError('non-canonical varint in side information');
        return value;
      }
      scale *= 128;
    }
  }

  /** One little-endian unsigned integer of `size` bytes (size <= 4). */
  uint(size) {
    if (this.position + size > this.bytes.length) throw new GscFormatError('truncated side information');
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + this.bytes[this.position + i];
    this.position += size;
    return value;
  }

  get exhausted() {
    return this.position === this.bytes.length;
  }
}

function unzigzag(value) {
  return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
}

// ------------------------------------------------------------------------------ models

/**
 * The integer CDF constriction's `Categorical(probabilities, perfect=False)` builds
 * (ContiguousCategoricalEntropyModel<u32, _, 24>::from_floating_point_probabilities_fast):
 * free = 2^24 - n; norm = left-to-right float64 sum; scale = free / norm;
 * cdf[i] = trunc(float64(cum_i * scale)) + i with cum_i the left-to-right float64 sum of the
 * first i probabilities; cdf[n] = 2^24. Every symbol gets a nonzero frequency.
 * @param {Float64Array} probabilities
 * @returns {Uint32Array}
 */
export function quantizedCdf(probabilities) {
  const n = probabilities.length;
  let norm = 0;
  for (let i = 0; i < n; i++) norm += probabilities[i];
  if (!(norm >= 2.2250738585072014e-308 && norm < Infinity)) {
    throw new GscFormatError('probability table that cannot be normalized');
  }
  const scale = (PRECISION_TOTAL - n) / norm;
  const cdf = new Uint32Array(n + 1);
  let cumulative = 0;
  for (let i = 0; i < n; i++) {
    cdf[i] = Math.min(Math.trunc(cumulative * scale), 0xffffffff) + i;
    cumulative += probabilities[i];
  }
  cdf[n] = PRECISION_TOTAL;
  return cdf;
}

/** LAPLACE table over [lo, hi] (§2): P(0) = 1 - m, P(k) = (0.5(1 - m²)/m)·(m²)^|k|. */
function laplaceProbabilities(mCode, lo, hi) {
  const m = mCode / M_SCALE;
  const top = Math.max(Math.abs(lo), Math.abs(hi));
  const byMagnitude = new Float64Array(top + 1);
  byMagnitude[0] = 1 - m;
  const factor = (0.5 * (1 - m * m)) / m;
  const m2 = m * m;
  let power = 1; // (m²)^k as a running product, as numpy's cumprod computes it
  for (let k = 1; k <= top; k++) {
    power *= m2;
    byMagnitude[k] = factor * power;
  }
  const table = new Float64Array(hi - lo + 1);
  for (let s = lo; s <= hi; s++) table[s - lo] = byMagnitude[Math.abs(s)];
  return table;
}

let levelDeltaModel = null; // built on first use (needs DecoderModel)
const LEVEL_POWERS = (() => {
  const powers = new Float64Array(MAX_LEVEL + 1);
  for (let q = 1; q <= MAX_LEVEL; q++) powers[q] = quarterPower(q - 1);
  return powers;
})();

// ------------------------------------------------------------------------------ range decoder

const TWO24 = 16777216;
const INV_TWO24 = 1 / TWO24;
const INV_TWO32 = 1 / TWO32;
const LOOKUP_SHIFT = 12; // quantile >> 12 indexes a model's 4096-entry symbol lookup

const TWO12 = 4096;
const TWO20 = 1048576;
const TWO40 = 1099511627776;
const INV_TWO12 = 1 / TWO12;
const INV_TWO20 = 1 / TWO20;
const QUOTIENT_MARGIN = 2 ** -20;

/**
 * The exact quantile ⌊diff / scale⌋ from its float64 estimate q (within ±1), through the
 * remainder diff − q·scale computed modulo 2^52 (its true value is far smaller). An estimate
 * above 2^24 is returned as it is: the payload is refused either way.
 * @param {number} dh @param {number} dl diff = dh·2^32 + dl
 * @param {number} scale below 2^40 @param {number} q
 */
function exactQuotient(dh, dl, scale, q) {
  if (q > PRECISION_TOTAL) return q;
  const high = scale * Math.floor(q * INV_TWO12); // q·scale = high·2^12 + scale·(q mod 2^12)
  const product = (high - Math.floor(high / TWO40) * TWO40) * TWO12 + scale * (q % TWO12);
  let r = ((dh % TWO20) * TWO32 + dl) - product;
  r -= Math.round(r / 2 ** 52) * 2 ** 52;
  while (r < 0) { q--; r += scale; }
  while (r >= scale) { q++; r -= scale; }
  return q;
}

/**
 * A 24-bit model for decoding: its CDF and a lookup of the symbol at every multiple of
 * 2^12 (the search then walks forward a few entries at most, on average).
 */
class DecoderModel {
  /** @param {Uint32Array} cdf */
  constructor(cdf) {
    this.cdf = cdf;
    const lookup = new Uint32Array((PRECISION_TOTAL >>> LOOKUP_SHIFT) + 1);
    let symbol = 0;
    for (let bucket = 0; bucket < lookup.length; bucket++) {
      const quantile = bucket << LOOKUP_SHIFT;
      while (symbol + 1 < cdf.length - 1 && cdf[symbol + 1] <= quantile) symbol++;
      lookup[bucket] = symbol;
    }
    this.lookup = lookup;
  }
}

/**
 * constriction's queue RangeDecoder<u32, u64> (DefaultRangeDecoder) with 24-bit models, in
 * float64 arithmetic that stays exact. It keeps `diff` = point − lower as dh·2^32 + dl and,
 * instead of `range`, `scale` = range >> 24 (below 2^40, so exact): the low bits of `range`
 * are dropped by the next `scale` anyway, except when renormalizing, where `range` is below
 * 2^32 and exact. Every accepted symbol leaves diff < range (the next quantile is below 2^24
 * or the payload is refused), so diff never wraps around 2^64.
 */
class RangeDecoder {
  /** @param {Uint32Array} words */
  constructor(words) {
    this.words = words;
    this.pos = Math.min(2, words.length);
    this.dh = words.length > 0 ? words[0] : 0;
    this.dl = words.length > 1 ? words[1] : 0;
    this.scale = TWO40 - 1; // range 2^64 − 1
    this.untouched = true;
  }

  /**
   * Decode `count` symbols with one model into out[offset..], adding `base` to each.
   * @param {DecoderModel} model @param {number} count @param {Int32Array} out
   * @param {number} offset @param {number} base
   */
  decodeInto(model, count, out, offset, base) {
    if (count === 0) return;
    const { cdf, lookup } = model;
    const words = this.words;
    const nWords = words.length;
    let { scale, dh, dl, pos } = this;
    for (let i = 0; i < count; i++) {
      // diff / scale in float64 is within 2^−28 of the true quotient (below 2^24 when valid),
      // so its floor is the quantile unless it lies that close to an integer
      const ratio = (dh * TWO32 + dl) / scale;
      let q = Math.floor(ratio);
      if (ratio - q < QUOTIENT_MARGIN || ratio - q > 1 - QUOTIENT_MARGIN) q = exactQuotient(dh, dl, scale, q);
      if (q >= PRECISION_TOTAL) throw new GscFormatError('invalid range-coded payload');
      let symbol = lookup[q >>> LOOKUP_SHIFT];
      while (cdf[symbol + 1] <= q) symbol++;
      const left = cdf[symbol];
      const probability = cdf[symbol + 1] - left;
      out[offset + i] = symbol + base;
      // diff −= scale·left, with scale·left = A·2^12 + B (A, B < 2^52) and A = Ah·2^20 + Al
      const a = scale * (left >>> 12);
      const ah = Math.floor(a * INV_TWO20);
      const low = dl - (a - ah * TWO20) * 4096 - scale * (left & 4095);
      const borrow = Math.floor(low * INV_TWO32);
      dl = low - borrow * TWO32;
      dh = dh - ah + borrow;
      const range = scale * probability; // exact when below 2^32, the only case that needs it
      if (range < TWO32) { // renormalize: range << 32, point << 32 | next word (diff < range)
        scale = range * 256;
        dh = dl;
        dl = pos < nWords ? words[pos++] : 0;
      } else { // range >> 24 = ⌊scale·ph / 2^12 + scale·pl / 2^24⌋ with probability = ph·2^12 + pl
        const high = scale * (probability >>> 12) * INV_TWO12;
        const whole = Math.floor(high);
        scale = whole + Math.floor(high - whole + scale * (probability & 4095) * INV_TWO24);
      }
    }
    this.untouched = false;
    Object.assign(this, { scale, dh, dl, pos });
  }

  /** constriction's maybe_exhausted(): all words read and diff < 2^33 − 1 (or nothing decoded). */
  maybeExhausted() {
    const small = this.dh === 0 || (this.dh === 1 && this.dl < TWO32 - 1);
    return this.pos >= this.words.length && (this.untouched || small);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Little-endian u32 words of bytes[start, end) ((end − start) % 4 == 0): a copy of the bytes
 * viewed as words on a little-endian machine, assembled byte by byte elsewhere. */
function wordsOf(bytes, start, end) {
  if (LITTLE_ENDIAN) return new Uint32Array(bytes.slice(start, end).buffer);
  const count = (end - start) / 4;
  const words = new Uint32Array(count);
  for (let i = 0, j = start; i < count; i++, j += 4) {
    words[i] = (bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24)) >>> 0;
  }
  return words;
}

/** One segment's model, read from the side bytes; `take` decodes its symbols in runs. */
class Segment {
  /** @param {RangeDecoder} decoder @param {DecoderModel | null} model @param {number} lo */
  constructor(decoder, model, lo) {
    this.decoder = decoder;
    this.model = model;
    this.lo = lo;
  }

  /** The next `count` symbols into out[offset..]. @param {number} count @param {Int32Array} out @param {number} offset */
  take(count, out, offset) {
    if (this.model === null) out.fill(this.lo, offset, offset + count);
    else this.decoder.decodeInto(this.model, count, out, offset, this.lo);
    return out;
  }
}

/** The segments of one entropy stream (§2), read in order; the caller gives each length. */
class StreamReader {
  /** @param {Uint8Array} data */
  constructor(data) {
    const header = new ByteReader(data);
    const sideSize = header.varint(data.length);
    const start = header.position;
    if (start + sideSize > data.length) throw new GscFormatError('truncated side information');
    const payload = data.length - start - sideSize;
    if (payload % 4) throw new GscFormatError(`payload of ${payload} bytes is not whole 32-bit words`);
    this.side = new ByteReader(data.subarray(start, start + sideSize));
    this.decoder = new RangeDecoder(wordsOf(data, start + sideSize, data.length));
  }

  /** The model of the next (non-empty) segment. */
  segment() {
    const tag = this.side.uint(1);
    if (tag > 2) throw new GscFormatError(`unknown segment model ${tag}`);
    const lo = unzigzag(this.side.varint(2 * SYMBOL_LIMIT));
    if (tag === 0) return new Segment(this.decoder, null, lo);
    const span = this.side.varint(MAX_ALPHABET - 1);
    const hi = lo + span;
    if (span === 0 || hi > SYMBOL_LIMIT) throw new GscFormatError(`invalid symbol range [${lo}, ${hi}]`);
    let probabilities;
    if (tag === 1) {
      const deltas = new Int32Array(span + 1);
      levelDeltaModel ??= new DecoderModel(quantizedCdf(
        laplaceProbabilities(LEVEL_DELTA_M_CODE, -MAX_LEVEL, MAX_LEVEL)));
      this.decoder.decodeInto(levelDeltaModel, span + 1, deltas, 0, -MAX_LEVEL);
      probabilities = new Float64Array(span + 1);
      let level = 0;
      let valid = true;
      let top = 0;
      for (let j = 0; j <= span; j++) {
        level += deltas[j];
        if (level < 0 || level > MAX_LEVEL) valid = false;
        else probabilities[j] = LEVEL_POWERS[level];
        if (level > top) top = level;
      }
      if (!valid || top === 0) throw new GscFormatError('invalid histogram levels');
    } else {
      const mCode = this.side.uint(2);
      if (mCode < 1 || mCode >= M_SCALE) throw new GscFormatError(`invalid Laplace parameter ${mCode}`);
      if (Math.max(Math.abs(lo), Math.abs(hi)) >= MAX_ALPHABET) {
        throw new GscFormatError(`Laplace segment over [${lo}, ${hi}] beyond the alphabet limit`);
      }
      probabilities = laplaceProbabilities(mCode, lo, hi);
    }
    return new Segment(this.decoder, new DecoderModel(quantizedCdf(probabilities)), lo);
  }

  /**
   * The next segment of `count` symbols into out[offset..] (a new Int32Array when omitted).
   * @param {number} count @param {Int32Array} [out] @param {number} [offset]
   */
  read(count, out = new Int32Array(count), offset = 0) {
    return count === 0 ? out : this.segment().take(count, out, offset);
  }

  /** Refuse leftover side bytes or payload that definitely holds more symbols. */
  close() {
    if (!this.side.exhausted) throw new GscFormatError('unread side information after the last segment');
    if (!this.decoder.maybeExhausted()) throw new GscFormatError('unread payload after the last segment');
  }
}

/**
 * The symbols of a self-describing entropy stream (varint count, then one segment): the
 * counterpart of Python's `compression.entropy.decode_symbols` (used by the tests to check
 * the range decoder and the probability tables against constriction).
 * @param {Uint8Array} bytes @param {number} maxCount refuse a stored count above this
 * @returns {Int32Array}
 */
export function decodeSymbols(bytes, maxCount) {
  const head = new ByteReader(bytes);
  const count = head.varint(Math.min(maxCount, 2 ** 31 - 1));
  const reader = new StreamReader(bytes.subarray(head.position));
  const symbols = reader.read(count);
  reader.close();
  return symbols;
}

// ------------------------------------------------------------------------------ geometry (§3)

const POPCOUNT = (() => {
  const table = new Uint8Array(256);
  for (let i = 1; i < 256; i++) table[i] = (i & 1) + table[i >> 1];
  return table;
})();
/** ROUND_PAIRS[256·r + byte]: the merges of RAHT round r (§4) within a node of that occupancy. */
const ROUND_PAIRS = (() => {
  const table = new Uint8Array(3 * 256);
  for (let byte = 0; byte < 256; byte++) {
    let groups = byte; // bit g: group g is not empty
    for (let r = 0, step = 1; r < 3; r++, step *= 2) {
      for (let g = 0; g < 8; g += 2 * step) {
        if (groups & (1 << g) && groups & (1 << (g + step))) table[256 * r + byte]++;
        if (groups & (1 << (g + step))) groups = (groups | (1 << g)) & ~(1 << (g + step));
      }
    }
  }
  return table;
})();
/** SET_BITS[8·byte + j]: the j-th set bit of byte (ascending), j < POPCOUNT[byte]. */
const SET_BITS = (() => {
  const table = new Uint8Array(256 * 8);
  for (let byte = 0; byte < 256; byte++) {
    for (let k = 0, j = 0; k < 8; k++) if (byte & (1 << k)) table[8 * byte + j++] = k;
  }
  return table;
})();

/**
 * The nodes of the next depth from this depth's occupancy bytes, in Morton order.
 * @param {Uint8Array} bytes @param {Float64Array} xy @param {Uint32Array} z this depth's nodes
 * @param {Float64Array} nextXy @param {Uint32Array} nextZ receive the children
 * @param {Float64Array} childXy xy offset of child k (0..7) from twice its parent's
 */
function childNodes(bytes, xy, z, nextXy, nextZ, childXy) {
  for (let i = 0, c = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    const parentXy = 2 * xy[i];
    const parentZ = 2 * z[i];
    for (let b = 8 * byte, end = b + POPCOUNT[byte]; b < end; b++, c++) {
      const k = SET_BITS[b];
      nextXy[c] = parentXy + childXy[k];
      nextZ[c] = parentZ + (k & 1);
    }
  }
}

/**
 * Octree occupancy → the leaves in ascending Morton order as voxel coordinates (xy =
 * x·2^D + y and z), plus every depth's occupancy bytes (the RAHT plan is built from them). A
 * group (one segment) is decoded depth by depth, so memory stays bounded by N nodes per depth;
 * the symbols and the checks are those of the Python reader, which decodes a whole group at once.
 * @param {Uint8Array} data the geometry stream @param {number} maxPoints N from the header
 * @returns {{depth: number, xy: Float64Array, z: Uint32Array, occupancy: Uint8Array[]}}
 */
function decodeOctree(data, maxPoints) {
  const reader = new ByteReader(data);
  const depth = reader.uint(1);
  if (depth < 1 || depth > MAX_DEPTH) throw new GscFormatError(`invalid octree depth ${depth}`);
  const count = reader.varint(maxPoints);
  if (count === 0) throw new GscFormatError('octree with no points');
  const groups = reader.varint(depth);
  const groupSizes = [];
  let total = 0;
  for (let g = 0; g < groups; g++) {
    groupSizes.push(reader.varint(depth * count));
    total += groupSizes[g];
  }
  if (total > depth * count) throw new GscFormatError('more occupancy bytes than the tree can hold');
  const stream = new StreamReader(data.subarray(reader.position));
  /** @type {Uint8Array[]} */
  const occupancy = [];
  // each node as xy = x·2^D + y (exact in float64) and z; this depth's nodes and the next
  // depth's, the buffers swapped per depth
  const side = 2 ** depth;
  const childXy = Float64Array.from({ length: 8 }, (_, k) => (k >> 2) * side + ((k >> 1) & 1));
  let xy = new Float64Array(count);
  let z = new Uint32Array(count);
  let nextXy = new Float64Array(count);
  let nextZ = new Uint32Array(count);
  const symbols = new Int32Array(count);
  let nodes = 1;
  for (const size of groupSizes) {
    if (size === 0) continue;
    const segment = stream.segment();
    let used = 0;
    while (used < size) {
      const parents = nodes;
      if (occupancy.length === depth || used + parents > size) {
        throw new GscFormatError('occupancy groups do not match the tree\'s levels');
      }
      segment.take(parents, symbols, 0);
      const level = occupancy.length;
      const bytes = new Uint8Array(parents);
      let children = 0;
      for (let i = 0; i < parents; i++) {
        const s = symbols[i];
        if (s < 1 || s > 255) throw new GscFormatError('occupancy byte out of range');
        bytes[i] = s;
        children += POPCOUNT[s];
      }
      if (children > count) throw new GscFormatError(`octree depth ${level}: more than ${count} nodes`);
      childNodes(bytes, xy, z, nextXy, nextZ, childXy);
      occupancy.push(bytes);
      [xy, nextXy, z, nextZ] = [nextXy, xy, nextZ, z];
      nodes = children;
      used += parents;
    }
  }
  stream.close();
  if (occupancy.length !== depth || nodes !== count) {
    throw new GscFormatError(`octree decodes to ${nodes} points at depth ${occupancy.length}, ` +
      `expected ${count} at depth ${depth}`);
  }
  return { depth, xy, z, occupancy };
}

/**
 * Permutation of the leaves (Morton order) into ascending voxel key x·2^(2D) + y·2^D + z:
 * a stable LSD radix sort of xy = x·2^D + y (keys carried along with the indices; digits of
 * at most 12 bits). z needs no pass: among leaves of equal x and y, Morton order is already
 * ascending in z.
 * @param {Float64Array} leafXy xy of every leaf in Morton order (its memory is reused)
 * @param {number} depth
 * @returns {{order: Int32Array, xy: Float64Array}} order[i] = Morton index of the i-th voxel
 *   in key order, xy[i] its xy
 */
function keyOrder(leafXy, depth) {
  const n = leafXy.length;
  const digits = Math.ceil((2 * depth) / 12);
  const bits = Math.ceil((2 * depth) / digits);
  const radix = 2 ** bits;
  const mask = radix - 1;
  let keys = leafXy;
  /** @type {number[]} 2^(−bits·d): key × scales[d] truncates to digit d and above */
  const scales = Array.from({ length: digits }, (_, d) => 2 ** (-bits * d));
  // every digit's histogram in one pass, then turned into the start of each bucket
  const starts = new Int32Array(digits * radix);
  for (let i = 0; i < n; i++) {
    const key = keys[i];
    for (let d = 0; d < digits; d++) starts[d * radix + ((key * scales[d]) & mask)]++;
  }
  for (let d = 0; d < digits; d++) {
    for (let j = d * radix, end = j + radix, sum = 0; j < end; j++) {
      const count = starts[j];
      starts[j] = sum;
      sum += count;
    }
  }
  let order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let scratch = new Int32Array(n);
  let scratchKeys = new Float64Array(n);
  for (let d = 0; d < digits; d++) {
    const scale = scales[d];
    const base = d * radix;
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      const at = starts[base + ((key * scale) & mask)]++;
      scratch[at] = order[i];
      scratchKeys[at] = key;
    }
    [order, scratch] = [scratch, order];
    [keys, scratchKeys] = [scratchKeys, keys];
  }
  return { order, xy: keys };
}

// ------------------------------------------------------------------------------ RAHT (§4)

/**
 * The RAHT pairs of the octree, level by level (finest first), each level's pairs in
 * ascending slot order — the order of the AC codes in the attribute stream. Round 3j + i
 * merges along bit i (z, y, x) of tree depth D − 1 − j: within each node of that depth, the
 * children k and k + 1 (k even), then the pairs of those groups, then the two halves. A group
 * is represented by its first slot and its weight (number of voxels).
 */
function buildRaht(occupancy, n) {
  const left = new Int32Array(n - 1);
  const right = new Int32Array(n - 1);
  const weightA = new Float32Array(n - 1);
  const weightB = new Float32Array(n - 1);
  /** @type {number[]} pair index where each level ends */
  const levelEnds = [];
  // weights (voxel counts) of this depth's nodes and of their parents; a node's first slot is
  // the sum of the weights before it (its subtree's first leaf in Morton order)
  let weight = new Int32Array(n).fill(1);
  let parentWeight = new Int32Array(n);
  const groupSlot = new Int32Array(8);
  const groupWeight = new Int32Array(8);
  const cursor = new Int32Array(3);
  let pairs = 0;
  for (let t = occupancy.length - 1; t >= 0; t--) {
    const bytes = occupancy[t];
    const parents = bytes.length;
    // where each round's pairs start: this depth's pairs, round after round
    const counts = [0, 0, 0];
    for (let p = 0; p < parents; p++) {
      const byte = bytes[p];
      if (POPCOUNT[byte] > 1) for (let r = 0; r < 3; r++) counts[r] += ROUND_PAIRS[256 * r + byte];
    }
    cursor[0] = pairs;
    cursor[1] = pairs + counts[0];
    cursor[2] = cursor[1] + counts[1];
    let child = 0;
    let slot = 0;
    for (let p = 0; p < parents; p++) {
      const byte = bytes[p];
      if (POPCOUNT[byte] === 1) { // a single child: nothing to merge
        const w = weight[child++];
        parentWeight[p] = w;
        slot += w;
        continue;
      }
      for (let k = 0; k < 8; k++) {
        if (byte & (1 << k)) {
          const w = weight[child++];
          groupSlot[k] = slot;
          groupWeight[k] = w;
          slot += w;
        } else {
          groupWeight[k] = 0;
        }
      }
      // rounds 0, 1, 2: merge groups (g, g + step) for g = 0, 2·step, … in place into g
      for (let r = 0, step = 1; r < 3; r++, step *= 2) {
        for (let g = 0; g < 8; g += 2 * step) {
          const wl = groupWeight[g];
          const wr = groupWeight[g + step];
          if (wl > 0 && wr > 0) {
            const at = cursor[r]++;
            left[at] = groupSlot[g];
            right[at] = groupSlot[g + step];
            weightA[at] = Math.sqrt(wl / (wl + wr));
            weightB[at] = Math.sqrt(wr / (wl + wr));
            groupWeight[g] = wl + wr;
          } else if (wr > 0) {
            groupSlot[g] = groupSlot[g + step];
            groupWeight[g] = wr;
          }
        }
      }
      parentWeight[p] = groupWeight[0];
    }
    for (let r = 0; r < 3; r++) {
      if (counts[r] === 0) continue;
      pairs += counts[r];
      levelEnds.push(pairs);
    }
    [weight, parentWeight] = [parentWeight, weight];
  }
  return { left, right, weightA, weightB, levelEnds };
}

/** AC codes per entropy segment of a column (§5): whole levels, ≥ ⌈N/4⌉ codes each. */
function segmentSizes(levelEnds, n) {
  const least = Math.ceil(n / SEGMENT_SHARE);
  const sizes = [];
  let current = 0;
  let start = 0;
  for (const end of levelEnds) {
    current += end - start;
    start = end;
    if (current >= least) {
      sizes.push(current);
      current = 0;
    }
  }
  if (current) {
    if (sizes.length) sizes[sizes.length - 1] += current;
    else sizes.push(current);
  }
  return sizes;
}

/**
 * Dequantization and inverse RAHT (§4) of all columns at once, coarsest level first: the high
 * band of pair k in column c is code · step (rounded to float32), then L = a·low − b·high,
 * R = a·high + b·low, every product and sum rounded to float32.
 * @param {Int32Array} codes the AC codes, column after column (n − 1 each, in pair order)
 * @param {number[][]} steps steps[c][level], float32 values
 * @param {number[]} dc each column's DC coefficient (slot 0)
 * @param {{left: Int32Array, right: Int32Array, weightA: Float32Array, weightB: Float32Array,
 *   levelEnds: number[]}} plan buildRaht's pairs
 * @returns {Float32Array} [COLUMNS·n] the columns interleaved by slot (Morton order):
 *   value of column c at slot s is at COLUMNS·s + c
 */
function inverseRaht(codes, steps, dc, plan) {
  const { left, right, weightA, weightB, levelEnds } = plan;
  const pairs = left.length;
  const values = new Float32Array(COLUMNS * (pairs + 1));
  values.set(dc);
  const step = new Float64Array(COLUMNS);
  const fround = Math.fround;
  for (let l = levelEnds.length - 1; l >= 0; l--) {
    for (let c = 0; c < COLUMNS; c++) step[c] = steps[c][l];
    const start = l === 0 ? 0 : levelEnds[l - 1];
    for (let k = start; k < levelEnds[l]; k++) {
      const a = weightA[k];
      const b = weightB[k];
      const lo = COLUMNS * left[k];
      const hi = COLUMNS * right[k];
      for (let c = 0, at = k; c < COLUMNS; c++, at += pairs) {
        const low = values[lo + c];
        const high = fround(codes[at] * step[c]);
        values[lo + c] = fround(fround(a * low) - fround(b * high));
        values[hi + c] = fround(fround(a * high) + fround(b * low));
      }
    }
  }
  return values;
}

// ------------------------------------------------------------------------------ rotation (§7)

function fromHex64(hex) {
  const view = new DataView(new ArrayBuffer(8));
  view.setUint32(0, parseInt(hex.slice(0, 8), 16));
  view.setUint32(4, parseInt(hex.slice(8), 16));
  return view.getFloat64(0);
}

const TWO_OVER_PI = fromHex64('3fe45f306dc9c883');
const PIO2_HIGH = fromHex64('3ff921fb54400000');
const PIO2_LOW = fromHex64('3dd0b4611a626331');
// 1/n! in float64, n = 0..18, each the previous one divided by n
const INVERSE_FACTORIALS = (() => {
  const values = [1];
  for (let n = 1; n <= 18; n++) values.push(values[n - 1] / n);
  return values;
})();
// Taylor coefficients (−1)^i / (2i+1)! (sine) and (−1)^i / (2i)! (cosine), i ≥ 1
const [S1, S2, S3, S4, S5, S6, S7, S8] = [1, 2, 3, 4, 5, 6, 7, 8]
  .map((i) => (i % 2 ? -1 : 1) * INVERSE_FACTORIALS[2 * i + 1]);
const [C1, C2, C3, C4, C5, C6, C7, C8, C9] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
  .map((i) => (i % 2 ? -1 : 1) * INVERSE_FACTORIALS[2 * i]);

/**
 * cos and sin of half an angle as float32, the reproducible way of §7: Cody–Waite reduction
 * by π/2 in float64, Taylor polynomials, the quadrant's signs, one rounding to float32.
 * @param {Float32Array} angles @param {number} index the angle's index in `angles` (not the
 *   angle itself: a number argument of a call that is not inlined would be boxed on the heap)
 * @param {Float32Array} out receives cos(angle/2), sin(angle/2) @param {number} at where in `out`
 */
function halfAngleCosSin(angles, index, out, at) {
  const t = angles[index] * 0.5;
  const k = Math.floor(t * TWO_OVER_PI + 0.5);
  let r = (t - k * PIO2_HIGH) - k * PIO2_LOW;
  r = Math.min(Math.max(r, -1), 1);
  const z = r * r;
  // Horner, innermost first: h = c_m, then h = z·h + c_i
  const s = r + r * (z * (S1 + z * (S2 + z * (S3 + z * (S4 + z * (S5 + z * (S6 + z * (S7 + z * S8))))))));
  const c = 1 + z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * (C6 + z * (C7 + z * (C8 + z * C9))))))));
  const quadrant = k - 4 * Math.floor(k / 4);
  if (quadrant === 0) { out[at] = c; out[at + 1] = s; }
  else if (quadrant === 1) { out[at] = -s; out[at + 1] = c; }
  else if (quadrant === 2) { out[at] = -c; out[at + 1] = -s; }
  else { out[at] = s; out[at + 1] = -c; }
}

/**
 * Whether every value of values[start, end) lies in [lo, hi].
 * @param {Int32Array} values @param {number} start @param {number} end
 * @param {number} lo @param {number} hi
 */
function within(values, start, end, lo, hi) {
  for (let i = start; i < end; i++) if (values[i] < lo || values[i] > hi) return false;
  return true;
}

/**
 * The voxel centres in key order (§1, §3).
 * @param {Float64Array} xy x·2^D + y in key order @param {Uint32Array} z in Morton order
 * @param {Int32Array} order @param {number[]} bbox @param {number} depth
 */
function voxelPositions(xy, z, order, bbox, depth) {
  const n = order.length;
  const side = pow2(depth);
  const [minX, , minY, , minZ] = bbox;
  const voxelX = (bbox[1] - minX) / side;
  const voxelY = (bbox[3] - minY) / side;
  const voxelZ = (bbox[5] - minZ) / side;
  const positions = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    const x = Math.floor(xy[i] / side);
    positions[3 * i] = minX + (x + 0.5) * voxelX;
    positions[3 * i + 1] = minY + (xy[i] - x * side + 0.5) * voxelY;
    positions[3 * i + 2] = minZ + (z[order[i]] + 0.5) * voxelZ;
  }
  return positions;
}

/**
 * The attribute columns in key order: opacity, f_dc and log-scales as they are, the Euler
 * angles as quaternions (§7).
 * @param {Float32Array} attributes the interleaved columns of inverseRaht (Morton order)
 * @param {Int32Array} order
 */
function gatherAttributes(attributes, order) {
  const n = order.length;
  const opacityLogits = new Float32Array(n);
  const fDc = new Float32Array(3 * n);
  const logScales = new Float32Array(3 * n);
  const quaternions = new Float32Array(4 * n);
  const half = new Float32Array(6);
  const fround = Math.fround;
  for (let i = 0; i < n; i++) {
    const row = COLUMNS * order[i]; // opacity, roll, pitch, yaw, f_dc × 3, log-scale × 3
    opacityLogits[i] = attributes[row];
    for (let j = 0; j < 3; j++) {
      fDc[3 * i + j] = attributes[row + 4 + j];
      logScales[3 * i + j] = attributes[row + 7 + j];
    }
    halfAngleCosSin(attributes, row + 1, half, 0);
    halfAngleCosSin(attributes, row + 2, half, 2);
    halfAngleCosSin(attributes, row + 3, half, 4);
    const cr = half[0]; const sr = half[1];
    const cp = half[2]; const sp = half[3];
    const cy = half[4]; const sy = half[5];
    quaternions[4 * i] = fround(fround(fround(cr * cp) * cy) + fround(fround(sr * sp) * sy));
    quaternions[4 * i + 1] = fround(fround(fround(sr * cp) * cy) - fround(fround(cr * sp) * sy));
    quaternions[4 * i + 2] = fround(fround(fround(cr * sp) * cy) + fround(fround(sr * cp) * sy));
    quaternions[4 * i + 3] = fround(fround(fround(cr * cp) * sy) - fround(fround(sr * sp) * cy));
  }
  return { opacityLogits, fDc, logScales, quaternions };
}

/**
 * f_rest of every Gaussian from its codebook row, in the PLY's channel-major order: the rows
 * reordered once, then copied per Gaussian.
 * @param {Float32Array} codebook [K · 3·((d+1)² − 1)], coefficient-major rows
 * @param {Int32Array} vqIndices @param {number} degree
 */
function restCoefficients(codebook, vqIndices, degree) {
  const coefficients = (degree + 1) ** 2 - 1;
  const restWidth = 3 * coefficients;
  const rows = new Float32Array(codebook.length);
  for (let row = 0; row < codebook.length; row += restWidth) {
    for (let ch = 0; ch < 3; ch++) {
      for (let j = 0; j < coefficients; j++) rows[row + ch * coefficients + j] = codebook[row + 3 * j + ch];
    }
  }
  const fRest = new Float32Array(vqIndices.length * restWidth);
  for (let i = 0, at = 0; i < vqIndices.length; i++) {
    for (let j = vqIndices[i] * restWidth, end = j + restWidth; j < end; j++, at++) fRest[at] = rows[j];
  }
  return fRest;
}

// ------------------------------------------------------------------------------ the file

/**
 * Decode a `bitstream.gsc` (format 2 or 3).
 * @param {Uint8Array} bytes the whole file
 * @param {DecodeOptions} [options]
 * @returns {GscScene}
 * @throws {GscFormatError} anything wrong with the bytes (the message names it)
 */
export function decodeGsc(bytes, options = {}) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decodeGsc: expected a Uint8Array');
  const progress = options.onProgress ?? (() => {});
  const size = bytes.length;
  if (size > MAX_FILE_BYTES) throw new GscFormatError(`${size} bytes, above the ${MAX_FILE_BYTES}-byte limit`);
  if (size < FIXED_HEADER + 8 + CRC_BYTES) {
    throw new GscFormatError(`${size} bytes, shorter than a compact bitstream's header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (MAGIC.some((byte, i) => bytes[i] !== byte)) {
    const shown = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new GscFormatError(`not a compact bitstream (magic ${shown})`);
  }
  const version = bytes[4];
  if (!FORMAT_VERSIONS.includes(version)) {
    throw new GscFormatError(`format version ${version}; this reader reads versions ${FORMAT_VERSIONS.join(' and ')}`);
  }
  if (crc32(bytes, 0, size - CRC_BYTES) !== view.getUint32(size - CRC_BYTES, true)) {
    throw new GscFormatError('CRC mismatch (the file is damaged or truncated)');
  }
  const shDegree = bytes[5];
  const depth = bytes[6];
  const quality = bytes[7];
  const n = view.getUint32(8, true);
  const k = view.getUint32(12, true);
  const codebookExponent = view.getInt8(16);
  const degree = Math.min(shDegree, 3);
  const restWidth = 3 * ((degree + 1) ** 2 - 1);
  const problems = [
    [shDegree <= 3, `SH degree ${shDegree} above 3`],
    [depth >= 1 && depth <= MAX_DEPTH, `depth ${depth} outside [1, ${MAX_DEPTH}]`],
    [quality <= 9, `quality ${quality} above 9`],
    [n >= 2 && n <= MAX_GAUSSIANS, `${n} Gaussians outside [2, ${MAX_GAUSSIANS}]`],
    [n <= 8 * size, `${n} Gaussians in ${size} bytes (below one bit each)`],
    [(k === 0) === (restWidth === 0) && k <= Math.min(n, MAX_CODEBOOK),
      `codebook of ${k} rows for ${n} Gaussians at SH degree ${shDegree}`],
    [Math.abs(codebookExponent) <= EXPONENT_LIMIT && (k > 0 || codebookExponent === 0),
      `codebook step exponent ${codebookExponent}`],
  ];
  for (const [ok, what] of problems) if (!ok) throw new GscFormatError(what);
  let offset = 17;
  const bbox = [];
  for (let i = 0; i < 6; i++, offset += 8) bbox.push(view.getFloat64(offset, true));
  const fixedEnd = offset + 4 * COLUMNS + (version >= 3 ? UP_BYTES : 0);
  if (size < fixedEnd + 8 + CRC_BYTES) throw new GscFormatError('truncated header');
  const dc = [];
  for (let c = 0; c < COLUMNS; c++, offset += 4) dc.push(view.getFloat32(offset, true));
  if (!bbox.every(Number.isFinite) || !dc.every(Number.isFinite)
      || !(bbox[1] >= bbox[0] && bbox[3] >= bbox[2] && bbox[5] >= bbox[4])) {
    throw new GscFormatError('bounding box or DC coefficients not finite (or min > max)');
  }
  let up = null;
  if (version >= 3) {
    const vector = [0, 1, 2].map((i) => view.getFloat32(offset + 4 * i, true));
    offset += UP_BYTES;
    const norm = Math.hypot(...vector);
    if (!vector.every(Number.isFinite) || (norm !== 0 && Math.abs(norm - 1) > 1e-3)) {
      throw new GscFormatError('up vector neither zero nor of unit length');
    }
    if (norm !== 0) up = /** @type {[number, number, number]} */ (vector);
  }
  const streams = [];
  for (const name of ['geometry', 'attribute']) {
    if (offset + 4 > size - CRC_BYTES) throw new GscFormatError(`truncated before the ${name} stream`);
    const length = view.getUint32(offset, true);
    offset += 4;
    if (length > size - CRC_BYTES - offset) throw new GscFormatError(`${name} stream of ${length} bytes runs past the end`);
    streams.push(bytes.subarray(offset, offset + length));
    offset += length;
  }
  if (offset !== size - CRC_BYTES) {
    throw new GscFormatError(`${size - CRC_BYTES - offset} unexpected bytes after the streams`);
  }
  progress(0.05);

  const geometry = decodeOctree(streams[0], n);
  if (geometry.depth !== depth || geometry.z.length !== n) {
    throw new GscFormatError(`geometry holds ${geometry.z.length} voxels at depth ${geometry.depth}, ` +
      `the header says ${n} at depth ${depth}`);
  }
  const plan = buildRaht(geometry.occupancy, n);
  const levels = plan.levelEnds.length;
  progress(0.2);

  const reader = new StreamReader(streams[1]);
  const steps = [];
  for (let c = 0; c < COLUMNS; c++) {
    const exponents = reader.read(levels);
    for (const e of exponents) {
      if (Math.abs(e) > EXPONENT_LIMIT) throw new GscFormatError(`a step exponent beyond ±${EXPONENT_LIMIT}`);
    }
    steps.push(Array.from(exponents, (e) => Math.fround(quarterPower(e))));
  }
  const sizes = segmentSizes(plan.levelEnds, n);
  const codes = new Int32Array(COLUMNS * (n - 1));
  for (let c = 0; c < COLUMNS; c++) {
    let start = c * (n - 1);
    for (const segmentSize of sizes) {
      reader.read(segmentSize, codes, start);
      start += segmentSize;
    }
    if (!within(codes, c * (n - 1), start, -MAX_CODE, MAX_CODE)) throw new GscFormatError(`an AC code beyond ±${MAX_CODE}`);
    progress(0.2 + 0.06 * (c + 1));
  }
  const vqIndices = k ? reader.read(n) : new Int32Array(0);
  if (!within(vqIndices, 0, vqIndices.length, 0, k - 1)) {
    throw new GscFormatError(`VQ indices outside the ${k}-row codebook`);
  }
  const codebookCodes = k ? reader.read(k * restWidth) : new Int32Array(0);
  reader.close();
  const codebookStep = Math.fround(quarterPower(codebookExponent));
  const codebook = new Float32Array(codebookCodes.length);
  if (!within(codebookCodes, 0, codebookCodes.length, -MAX_CODE, MAX_CODE)) {
    throw new GscFormatError(`a codebook code beyond ±${MAX_CODE}`);
  }
  for (let i = 0; i < codebookCodes.length; i++) codebook[i] = Math.fround(codebookCodes[i] * codebookStep);
  progress(0.85);

  const attributes = inverseRaht(codes, steps, dc, plan);
  const { order, xy } = keyOrder(geometry.xy, depth);
  const positions = voxelPositions(xy, geometry.z, order, bbox, depth);
  const { opacityLogits, fDc, logScales, quaternions } = gatherAttributes(attributes, order);
  const fRest = restCoefficients(codebook, vqIndices, degree);
  progress(1);
  return { formatVersion: version, count: n, shDegree, quality, positions, quaternions, logScales,
    opacityLogits, fDc, fRest, up };
}
