// Test harness driven by tests/test_web_decoder.py: runs web/gsc.mjs on files the Python side
// wrote and prints one JSON line per file.
//
//   node tests/web/harness.mjs symbols <maxCount> <file>...   decodeSymbols → {symbols} | {error}
//   node tests/web/harness.mjs gsc <out-dir> <file>...        decodeGsc → arrays written to
//        <out-dir>/<i>.<name>.bin (raw float32) and {count, up, ...} | {error}
//
// {error: {name, message}} reports any exception; the Python side asserts its type.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeGsc, decodeSymbols } from '../../web/gsc.mjs';

const [mode, parameter, ...files] = process.argv.slice(2);
const ARRAYS = ['positions', 'quaternions', 'logScales', 'opacityLogits', 'fDc', 'fRest'];

files.forEach((file, index) => {
  const bytes = new Uint8Array(readFileSync(file));
  let line;
  try {
    if (mode === 'symbols') {
      line = { symbols: Array.from(decodeSymbols(bytes, Number(parameter))) };
    } else {
      const scene = decodeGsc(bytes);
      for (const name of ARRAYS) {
        const array = scene[name];
        writeFileSync(join(parameter, `${index}.${name}.bin`), new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
      }
      line = { count: scene.count, shDegree: scene.shDegree, formatVersion: scene.formatVersion, up: scene.up };
    }
  } catch (error) {
    line = { error: { name: error?.name, message: String(error?.message) } };
  }
  process.stdout.write(`${JSON.stringify(line)}\n`);
});
