// Web Worker entry of the .gsc decoder (a module worker:
// `new Worker(new URL('./gsc-worker.mjs', import.meta.url), {type: 'module'})`).
//
// Receives: an ArrayBuffer or Uint8Array holding the whole file, or {bytes: ArrayBuffer |
// Uint8Array}. Posts {type: 'progress', fraction} while decoding, then either
// {type: 'result', scene} (the GscScene of decodeGsc; its typed arrays are transferred, not
// copied) or {type: 'error', name, message} (name 'GscFormatError' for a refused file).
import { decodeGsc } from './gsc.mjs';

/** @param {MessageEvent} event */
self.onmessage = (event) => {
  const data = event.data;
  const payload = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : data?.bytes;
  try {
    const bytes = payload instanceof ArrayBuffer ? new Uint8Array(payload)
      : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    const scene = decodeGsc(bytes, {
      onProgress: (fraction) => self.postMessage({ type: 'progress', fraction }),
    });
    const transfer = Object.values(scene).filter(ArrayBuffer.isView).map((array) => array.buffer);
    self.postMessage({ type: 'result', scene }, transfer);
  } catch (error) {
    self.postMessage({ type: 'error', name: error?.name ?? 'Error', message: String(error?.message ?? error) });
  }
};
