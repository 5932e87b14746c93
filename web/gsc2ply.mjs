#!/usr/bin/env node
// gsc2ply: convert a compact bitstream (bitstream.gsc, formats 2 and 3) into the standard
// 3DGS PLY that `render.py --given_ply_path scene.gsc --export_ply scene.ply` writes (same
// header, property order and float32 values), without Python.
//
//   node web/gsc2ply.mjs scene.gsc scene.ply
//
// A refused file ends with exit status 2 and one stderr line `gsc2ply: error: <file>:
// <problem>`; the output is written to a temporary sibling and renamed, so a failure never
// leaves a partial file.
import { closeSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeGsc, GscFormatError } from './gsc.mjs';

const PROGRAM = 'gsc2ply';
const MAX_FILE_BYTES = 2 ** 32;

/**
 * The PLY header scene/ply.py (through plyfile) writes for N Gaussians at SH degree d.
 * @param {number} count @param {number} restCount f_rest values per Gaussian
 */
export function plyHeader(count, restCount) {
  const names = ['x', 'y', 'z', 'nx', 'ny', 'nz', 'f_dc_0', 'f_dc_1', 'f_dc_2',
    ...Array.from({ length: restCount }, (_, i) => `f_rest_${i}`),
    'opacity', 'scale_0', 'scale_1', 'scale_2', 'rot_0', 'rot_1', 'rot_2', 'rot_3'];
  const lines = ['ply', 'format binary_little_endian 1.0', `element vertex ${count}`,
    ...names.map((name) => `property float ${name}`), 'end_header'];
  return { text: `${lines.join('\n')}\n`, properties: names.length };
}

/**
 * The PLY body: one row of float32 per Gaussian (normals 0), little-endian.
 * @param {import('./gsc.mjs').GscScene} scene @param {number} properties
 */
export function plyBody(scene, properties) {
  const { count, positions, fDc, fRest, opacityLogits, logScales, quaternions } = scene;
  const rest = fRest.length / count;
  const rows = new Float32Array(count * properties);
  for (let i = 0, o = 0; i < count; i++) {
    rows[o] = positions[3 * i]; rows[o + 1] = positions[3 * i + 1]; rows[o + 2] = positions[3 * i + 2];
    rows[o + 6] = fDc[3 * i]; rows[o + 7] = fDc[3 * i + 1]; rows[o + 8] = fDc[3 * i + 2];
    o += 9;
    for (let j = 0; j < rest; j++) rows[o + j] = fRest[i * rest + j];
    o += rest;
    rows[o] = opacityLogits[i];
    rows[o + 1] = logScales[3 * i]; rows[o + 2] = logScales[3 * i + 1]; rows[o + 3] = logScales[3 * i + 2];
    rows[o + 4] = quaternions[4 * i]; rows[o + 5] = quaternions[4 * i + 1];
    rows[o + 6] = quaternions[4 * i + 2]; rows[o + 7] = quaternions[4 * i + 3];
    o += 8;
  }
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) { // big-endian host: swap to LE
    const view = new DataView(rows.buffer);
    for (let b = 0; b < rows.byteLength; b += 4) view.setUint32(b, view.getUint32(b, false), true);
  }
  return new Uint8Array(rows.buffer);
}

/** Write `chunks` to `path` through a temporary sibling renamed at the end (never partial). */
function writeAtomically(path, chunks) {
  const tmp = join(dirname(path), `.${basename(path)}.tmp${process.pid}`);
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (const chunk of chunks) {
        for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done, chunk.length - done);
      }
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** @param {string[]} argv */
function main(argv) {
  if (argv.length !== 2 || argv.some((arg) => arg.startsWith('-'))) {
    process.stderr.write(`${PROGRAM}: error: usage: node web/gsc2ply.mjs scene.gsc scene.ply\n`);
    return 2;
  }
  const [input, output] = argv;
  try {
    let size;
    try {
      size = statSync(input).size;
    } catch {
      throw new GscFormatError('no such file');
    }
    if (size > MAX_FILE_BYTES) throw new GscFormatError(`${size} bytes, above the ${MAX_FILE_BYTES}-byte limit`);
    const bytes = readFileSync(input);
    const scene = decodeGsc(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const header = plyHeader(scene.count, scene.fRest.length / scene.count);
    writeAtomically(output, [new TextEncoder().encode(header.text), plyBody(scene, header.properties)]);
    return 0;
  } catch (error) {
    const file = error instanceof GscFormatError ? input : output;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${PROGRAM}: error: ${file}: ${message.split('\n')[0]}\n`);
    return 2;
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
