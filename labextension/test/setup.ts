// What jsdom lacks and Lumino uses at import time (as @jupyterlab/testing's shim provides).
if (typeof (globalThis as any).DragEvent === 'undefined') {
  (globalThis as any).DragEvent = class DragEvent extends MouseEvent {};
}
