// Relative imports: a JS module, a JSON file and a WebAssembly module.
import { shout } from "./lib/text.js";
import data from "./data.json" with { type: "json" };
import addModule from "./add.wasm";

const { exports } = new WebAssembly.Instance(addModule);

export default {
  fetch() {
    return Response.json({
      shout: shout(data.word),
      sum: exports.add(data.a, data.b),
      wasmIsModule: addModule instanceof WebAssembly.Module,
    });
  },
};
