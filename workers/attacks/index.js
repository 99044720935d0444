// Attacks on purpose, one per path: what the limits stop. Used by the
// limit tests (tests/limits.rs) and by benches/limits.sh, which reports how
// long after each limit the request was stopped. Anything else answers
// "good". /wasm-spin runs `(func (export "spin") (loop (br 0)))`.
// GROW is `(memory (export "mem") 1) (func (export "grow") (param i32)
// (result i32) (memory.grow (local.get 0)))`: its memory grows from inside
// Wasm, where no JS wrapper sees it.
const GROW = new Uint8Array([0,97,115,109,1,0,0,0,1,6,1,96,1,127,1,127,3,2,1,0,5,3,1,0,1,7,14,2,4,103,114,111,119,0,0,3,109,101,109,2,0,10,8,1,6,0,32,0,64,0,11]);
const attacks = {
  "/spin": () => { while (true) {} },
  "/microtasks": async () => { for (;;) await null; },
  "/timers": () => new Promise(() => { const again = () => { const t = Date.now(); while (Date.now() - t < 2) {} setTimeout(again, 0); }; again(); }),
  "/wasm-spin": () => new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array([0,97,115,109,1,0,0,0,1,4,1,96,0,0,3,2,1,0,7,8,1,4,115,112,105,110,0,0,10,9,1,7,0,3,64,12,0,11,11]))).exports.spin(),
  "/regex": () => /^(a+)+$/.test("a".repeat(40) + "b"),
  "/json": () => { let s = "["; for (let i = 0; i < 20; i++) s += '{"k":[1,2,3],"v":"x"},'.repeat(50000); JSON.parse(s + "0]"); },
  "/fill-sparse": () => new Array(1e8).fill(0),
  "/copy-within": () => new Array(1e8).copyWithin(0, 1),
  "/reverse-sparse": () => { const a = new Array(1e8); a[5] = 1; a.reverse(); },
  // Refused: V8 would go through 10^8 indexes without checking for
  // termination (a RangeError the worker may catch).
  "/sort-sparse": () => { const a = new Array(1e8); a[7] = 1; a.sort(); },
  "/map-sparse": () => { const a = new Array(1e8); a[7] = 1; a.map((x) => x); },
  "/array-like": () => Array.prototype.indexOf.call({ length: 1e8 }, 1),
  "/array-like-fill": () => Array.prototype.fill.call({ length: 1e8 }, 0),
  "/split-array": () => "x".repeat(1e8).split(""),
  "/split-huge": () => "x".repeat(2 ** 28).split(""),
  "/array-bomb": () => { const a = []; for (;;) a.push({ x: a.length, y: [1, 2, 3] }); },
  "/string-bomb": () => { let s = "x".repeat(1 << 20); const keep = []; for (;;) { s = s + s.slice(0, 1 << 20) + "y"; keep.push(s.slice(1)); } },
  "/buffer": () => new ArrayBuffer(1 << 30),
  "/buffers": () => { const keep = []; for (;;) keep.push(new Uint8Array(8 << 20)); },
  // Not an attack: 2 GB of buffers made and dropped (garbage is not held).
  "/garbage-buffers": () => { let n = 0; for (let i = 0; i < 1024; i++) n += new Uint8Array(1 << 20).length + new Uint8Array(8 << 20).length / 8; return new Response(String(n)); },
  "/wasm-grow-inside": () => { const { exports: ex } = new WebAssembly.Instance(new WebAssembly.Module(GROW)); for (;;) { if (ex.grow(160) < 0) return new Response("grow failed"); new Uint8Array(ex.mem.buffer).fill(1); } },
  "/wasm-instances": () => { const keep = []; for (;;) { const { exports: ex } = new WebAssembly.Instance(new WebAssembly.Module(GROW)); while (ex.grow(160) >= 0) new Uint8Array(ex.mem.buffer).fill(1); keep.push(ex); } },
  "/wasm-grow": () => { const m = new WebAssembly.Memory({ initial: 1, maximum: 65536 }); for (;;) { m.grow(160); new Uint8Array(m.buffer).fill(1); } },
  // Heap growth of other shapes (issue 14).
  "/heap-maps": () => { const a = []; for (;;) { const m = new Map(); for (let j = 0; j < 100; j++) m.set(j, { j }); a.push(m); } },
  "/heap-strings": () => { const a = []; for (let i = 0; ; i++) a.push("s" + i + "x".repeat(100) + i); },
  "/heap-closures": () => { const a = []; for (let i = 0; ; i++) { const v = [i, i]; a.push(() => v); } },
  "/heap-typed": () => { const a = []; for (;;) a.push(new Float64Array(1000)); },
  "/heap-objects": () => { const a = []; for (;;) a.push({ x: new Array(1000).fill(1) }); },
  "/heap-arrays": () => { const a = []; for (;;) a.push(new Array(1000).fill(1)); },
  // Decompression bombs, in the request body: kept whole, or read and
  // dropped (the limits stop them between 64 KiB pieces).
  "/gunzip-keep": async (req) => new Response((await new Response(req.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer()).byteLength),
  "/gunzip-count": async (req) => { let n = 0; for await (const c of req.body.pipeThrough(new DecompressionStream("gzip"))) n += c.byteLength; return new Response(String(n)); },
  // One builtin V8 runs to the end: only a backstop stops these.
  "/keys-string": () => Object.keys("x".repeat(2 ** 23)),
  "/clone-strings": () => structuredClone(Array(100).fill("ab".repeat(5e6))),
  "/recursion-caught": () => { const f = (n) => f(n + 1) + 1; try { f(0); } catch (e) { return new Response("caught " + e.constructor.name); } },
  "/recursion": () => { const f = (n) => f(n + 1) + 1; return f(0); },
  "/slow": () => new Promise((r) => setTimeout(() => r(new Response("late")), 5000)),
  "/never": () => new Promise(() => {}),
  "/read-body": async (req) => new Response("read " + (await req.arrayBuffer()).byteLength),
  "/fetches": async (req, env) => {
    const out = [];
    for (let i = 0; i < 4; i++) {
      try { await (await fetch(env.UP)).text(); out.push("ok"); } catch (e) { out.push(e.constructor.name + ": " + e.message); }
    }
    return new Response(out.join("\n"));
  },
};
export default {
  async fetch(req, env, ctx) {
    const path = new URL(req.url).pathname;
    if (path === "/background-spin") { ctx.waitUntil(new Promise((r) => setTimeout(r, 20)).then(() => { while (true) {} })); return new Response("sent"); }
    const attack = attacks[path];
    if (!attack) return new Response("good");
    const r = await attack(req, env);
    return r instanceof Response ? r : new Response("survived " + String(r));
  },
};
