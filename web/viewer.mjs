// The .gsc viewer page's logic: load a bitstream (embedded in the page, or `?url=` beside it),
// decode it in a Web Worker (gsc-worker.mjs) with a progress bar, and draw it with the
// PlayCanvas engine's Gaussian-splat renderer, upright (the file's up vector, format 3) with
// orbit controls. Plain ES module; the page (viewer.html, filled in by `render.py --export
// scene.html`) hands it the engine module and the worker's URL, so it imports nothing itself.
//
// The page's state is readable by tests and scripts on <body>: data-state = loading |
// decoding | ready | error, data-gaussians = N once decoded, data-decode-ms = the time from
// the bytes to the decoded arrays (worker start and transfer included), data-up = the up
// direction the scene is shown with ("x y z"); #error holds a refused file's message (the
// decoder's Error text).

/**
 * @typedef {import('./gsc.mjs').GscScene} GscScene
 * @typedef {typeof import('playcanvas')} PlayCanvas
 */

/**
 * @typedef {object} ViewerOptions
 * @property {PlayCanvas} pc the PlayCanvas engine module.
 * @property {string | URL} workerUrl URL of the decoder's worker, a classic script (gsc.mjs and
 *   gsc-worker.mjs joined: browsers start no module worker in a page opened from a file).
 * @property {Uint8Array | null} embedded the .gsc bytes the page embeds, or null.
 * @property {string} name the embedded file's name, shown in the status line.
 */

/** Up direction assumed when a file carries none (format 2, or no cameras): the -y of the
 * OpenCV camera axes most 3DGS training sets are posed in. */
const DEFAULT_UP = [0, -1, 0];
/** Share of the Gaussians (nearest the centre) the first view frames; the rest are floaters. */
const FRAMED_SHARE = 0.9;
/** Gaussians sampled for framing the first view (enough for stable quantiles). */
const FRAMING_SAMPLES = 65536;
const ORBIT_SPEED = 0.3; // degrees per pixel dragged
const ZOOM_STEP = 1.1; // distance factor per wheel notch

/**
 * Start the viewer in the current page.
 * @param {ViewerOptions} options
 */
export async function startViewer({ pc, workerUrl, embedded, name }) {
  const ui = pageElements();
  try {
    const source = new URL(location.href).searchParams.get('url');
    const bytes = source ? await download(new URL(source, location.href), ui)
      : embedded ?? fail('no scene in this page: add ?url=<file.gsc> to its address');
    ui.title.textContent = source ?? name;
    setState('decoding');
    const started = performance.now();
    const scene = await decodeInWorker(bytes, workerUrl, ui);
    document.body.dataset.decodeMs = (performance.now() - started).toFixed(1);
    document.body.dataset.gaussians = String(scene.count);
    showScene(pc, scene, ui);
    ui.status.textContent = `${scene.count.toLocaleString('en')} Gaussians · SH degree ${scene.shDegree} · `
      + `${(bytes.length / 1e3).toLocaleString('en', { maximumFractionDigits: 1 })} kB`;
    setState('ready');
  } catch (error) {
    ui.error.textContent = error instanceof Error ? error.message : String(error);
    ui.status.textContent = '';
    setState('error');
  } finally {
    ui.progress.hidden = true;
  }
}

/**
 * @typedef {object} PageElements
 * @property {HTMLCanvasElement} canvas
 * @property {HTMLProgressElement} progress
 * @property {HTMLElement} status
 * @property {HTMLElement} title
 * @property {HTMLElement} error
 */

/** @returns {PageElements} */
function pageElements() {
  const get = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
  return {
    canvas: /** @type {HTMLCanvasElement} */ (get('canvas')),
    progress: /** @type {HTMLProgressElement} */ (get('progress')),
    status: get('status'),
    title: get('title'),
    error: get('error'),
  };
}

/** @param {'loading' | 'decoding' | 'ready' | 'error'} state */
function setState(state) {
  document.body.dataset.state = state;
}

/** @param {string} message @returns {never} */
function fail(message) {
  throw new Error(message);
}

/**
 * The bytes at `url`, with the progress bar following the download.
 * @param {URL} url @param {PageElements} ui @returns {Promise<Uint8Array>}
 */
async function download(url, ui) {
  ui.status.textContent = `downloading ${url.pathname.split('/').pop()}`;
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    fail(`cannot load ${url}: ${error instanceof Error ? error.message : error}`);
  }
  if (!response.ok || !response.body) fail(`cannot load ${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get('content-length')) || 0;
  const chunks = [];
  let received = 0;
  for (const reader = response.body.getReader(); ;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    if (total) ui.progress.value = received / total;
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/**
 * Decode `bytes` in a module worker; the progress bar follows the decoder.
 * @param {Uint8Array} bytes @param {string | URL} workerUrl @param {PageElements} ui
 * @returns {Promise<GscScene>}
 */
function decodeInWorker(bytes, workerUrl, ui) {
  ui.status.textContent = 'decoding';
  ui.progress.value = 0;
  const worker = new Worker(workerUrl);
  return new Promise((resolve, reject) => {
    worker.onmessage = (/** @type {MessageEvent} */ event) => {
      const message = event.data;
      if (message.type === 'progress') {
        ui.progress.value = message.fraction;
        return;
      }
      worker.terminate();
      if (message.type === 'result') resolve(message.scene);
      else reject(new Error(message.message));
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(`the decoder's worker failed: ${event.message}`));
    };
    worker.postMessage(bytes);
  });
}

/**
 * The decoded arrays as the engine's GSplatData: one float property per PLY column (x, y, z,
 * f_dc_*, f_rest_*, opacity, scale_*, rot_*), the layout of a 3DGS PLY, which is what
 * GSplatResource reads. Interleaved arrays are split into those columns here.
 * @param {PlayCanvas} pc @param {GscScene} scene
 */
function splatData(pc, scene) {
  const n = scene.count;
  /** @type {[string, Float32Array][]} */
  const columns = [];
  /** @param {string[]} names @param {Float32Array} values */
  const split = (names, values) => {
    const stride = names.length;
    names.forEach((column, k) => {
      const storage = new Float32Array(n);
      for (let i = 0; i < n; i++) storage[i] = values[i * stride + k];
      columns.push([column, storage]);
    });
  };
  const restPerGaussian = scene.fRest.length / n;
  split(['x', 'y', 'z'], scene.positions);
  split(['f_dc_0', 'f_dc_1', 'f_dc_2'], scene.fDc);
  split(Array.from({ length: restPerGaussian }, (_, j) => `f_rest_${j}`), scene.fRest);
  columns.push(['opacity', scene.opacityLogits]);
  split(['scale_0', 'scale_1', 'scale_2'], scene.logScales);
  split(['rot_0', 'rot_1', 'rot_2', 'rot_3'], scene.quaternions);
  return new pc.GSplatData([{
    name: 'vertex',
    count: n,
    properties: columns.map(([column, storage]) => ({ type: 'float', name: column, storage, byteSize: 4 })),
  }]);
}

/**
 * The rotation taking `up` to the engine's +y, so that the scene stands upright.
 * @param {PlayCanvas} pc @param {[number, number, number] | null} up
 */
function uprightRotation(pc, up) {
  const [x, y, z] = up ?? DEFAULT_UP;
  return new pc.Quat().setFromDirections(new pc.Vec3(x, y, z), pc.Vec3.UP);
}

/**
 * Centre and radius of the first view: the median of a sample of the (rotated) positions, and
 * the distance from it within which FRAMED_SHARE of the sample lies.
 * @param {PlayCanvas} pc @param {Float32Array} positions @param {InstanceType<PlayCanvas['Quat']>} rotation
 */
function framing(pc, positions, rotation) {
  const n = positions.length / 3;
  const step = Math.max(1, Math.floor(n / FRAMING_SAMPLES));
  const points = [];
  for (let i = 0; i < n; i += step) {
    points.push(rotation.transformVector(new pc.Vec3(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2])));
  }
  const median = (/** @type {number[]} */ values) => values.sort((a, b) => a - b)[values.length >> 1];
  const centre = new pc.Vec3(median(points.map((p) => p.x)), median(points.map((p) => p.y)),
    median(points.map((p) => p.z)));
  const distances = points.map((p) => p.distance(centre)).sort((a, b) => a - b);
  const radius = distances[Math.min(distances.length - 1, Math.floor(FRAMED_SHARE * distances.length))];
  return { centre, radius: radius > 0 ? radius : 1 };
}

/**
 * Draw the scene in the page's canvas with an orbit camera around its centre.
 * @param {PlayCanvas} pc @param {GscScene} scene @param {PageElements} ui
 */
function showScene(pc, scene, ui) {
  const app = new pc.Application(ui.canvas, { graphicsDeviceOptions: { antialias: false } });
  app.setCanvasFillMode(pc.FILLMODE_FILL_WINDOW);
  app.setCanvasResolution(pc.RESOLUTION_AUTO);
  window.addEventListener('resize', () => app.resizeCanvas());
  app.start();

  const rotation = uprightRotation(pc, scene.up);
  document.body.dataset.up = (scene.up ?? DEFAULT_UP).join(' ');
  const { centre, radius } = framing(pc, scene.positions, rotation);
  const data = splatData(pc, scene);
  data.reorderData(); // Morton order: nearby splats share texture cache lines
  const splats = new pc.Entity('splats');
  splats.setRotation(rotation);
  splats.addComponent('gsplat', { resource: new pc.GSplatResource(app.graphicsDevice, data) });
  app.root.addChild(splats);

  const camera = new pc.Entity('camera');
  camera.addComponent('camera', {
    clearColor: new pc.Color(0.12, 0.12, 0.14),
    fov: 50,
    nearClip: radius / 1000,
    farClip: radius * 1000,
  });
  app.root.addChild(camera);
  orbit(pc, camera, ui.canvas, centre, 2.5 * radius);
}

/**
 * Orbit controls: drag to turn around the target, right drag (or shift drag) to pan, wheel to
 * zoom. The camera keeps the engine's +y (the scene's up) upright.
 * @param {PlayCanvas} pc @param {InstanceType<PlayCanvas['Entity']>} camera
 * @param {HTMLCanvasElement} canvas @param {InstanceType<PlayCanvas['Vec3']>} target
 * @param {number} distance
 */
function orbit(pc, camera, canvas, target, distance) {
  let yaw = 30;
  let pitch = -20;
  const place = () => {
    camera.setEulerAngles(pitch, yaw, 0);
    camera.setPosition(target.clone().add(camera.forward.clone().mulScalar(-distance)));
  };
  place();
  /** @type {{x: number, y: number, pan: boolean} | null} */
  let drag = null;
  canvas.addEventListener('contextmenu', (event) => event.preventDefault());
  canvas.addEventListener('pointerdown', (event) => {
    canvas.setPointerCapture(event.pointerId);
    drag = { x: event.clientX, y: event.clientY, pan: event.button === 2 || event.shiftKey };
  });
  canvas.addEventListener('pointerup', () => { drag = null; });
  canvas.addEventListener('pointermove', (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    drag.x = event.clientX;
    drag.y = event.clientY;
    if (drag.pan) {
      const scale = distance / canvas.clientHeight;
      target.add(camera.right.clone().mulScalar(-dx * scale)).add(camera.up.clone().mulScalar(dy * scale));
    } else {
      yaw -= dx * ORBIT_SPEED;
      pitch = Math.max(-89, Math.min(89, pitch - dy * ORBIT_SPEED));
    }
    place();
  });
  canvas.addEventListener('wheel', (event) => {
    event.preventDefault();
    distance *= event.deltaY > 0 ? ZOOM_STEP : 1 / ZOOM_STEP;
    place();
  }, { passive: false });
}
