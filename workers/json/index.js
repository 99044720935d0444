// Checks JSON.parse on texts long enough to be parsed in parts (see
// js-api/src/ext/json.rs) against what V8's parser gives: answers
// {"failed": [...names of failed checks]}.
export default {
  async fetch() {
    const failed = [];
    const check = (name, ok) => {
      if (!ok) failed.push(name);
    };
    const item = (i) => ({ i, s: 'x\u00e9"\\\n' + i, a: [i, -0.5e3, true, null, 1e21], o: { 10: 1, 2: 2, z: {} } });
    const list = (n) => Array.from({ length: n }, (_, i) => item(i));
    const values = [
      list(5000),
      { k: list(3000), m: { n: list(2000), 0: "zero" }, tail: "t" },
      [[list(4000)], list(10), []],
      "s".repeat(200000),
      ["y".repeat(100000), 1, { big: "z".repeat(70000) }],
      list(3000).map((o) => ({ ...o, u: "\u4e2d\u6587\ud83d\ude00" })),
    ];
    for (const [n, v] of values.entries()) {
      const text = JSON.stringify(v, null, n % 2 ? 2 : undefined);
      check("round trip " + n, JSON.stringify(JSON.parse(text)) === JSON.stringify(v));
    }
    const keys = (n) => Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(",");
    // __proto__ is an own property, duplicates keep the first place and the
    // last value, integer keys come first, setters up the chain are not run.
    let trapped = false;
    Object.defineProperty(Object.prototype, "trap", { set() { trapped = true; }, configurable: true });
    const o = JSON.parse(`{"d":1,"__proto__":{"x":1},"b":1,${keys(20000)},"5":1,"1":2,"trap":3,"d":2}`);
    delete Object.prototype.trap;
    check("__proto__ own", Object.getPrototypeOf(o) === Object.prototype && Object.hasOwn(o, "__proto__"));
    check("duplicate key", o.d === 2 && Object.keys(o).slice(0, 5).join() === "1,5,d,__proto__,b");
    check("no setter", !trapped && Object.hasOwn(o, "trap") && o.trap === 3);
    check("key count", Object.keys(o).length === 20006);
    // Nesting: deep but allowed, and too deep for a long text.
    const deep = JSON.parse("[".repeat(1500) + JSON.stringify(list(3000)) + "]".repeat(1500));
    let d = 0;
    for (let x = deep; Array.isArray(x); x = x[0]) d++;
    check("deep", d === 1501 && deep.flat(1500).length === 3000);
    try {
      JSON.parse("[".repeat(70000) + "]".repeat(70000));
      check("too deep throws", false);
    } catch (e) {
      check("too deep is a RangeError", e instanceof RangeError && /nested too deeply/.test(e.message));
    }
    // Errors name what and where, as V8 words them.
    const big = "[" + "1,".repeat(40000) + "1]";
    const errors = [
      ["[" + "1,".repeat(50000) + "x]", `Unexpected token 'x', ..."1,1,1,1,1,x]" is not valid JSON`],
      ["[" + "1,".repeat(50000) + "tru]", `Unexpected token ']', ...",1,1,1,tru]" is not valid JSON`],
      ["[" + "1,".repeat(50000) + "1", "Expected ',' or ']' after array element in JSON at position 100002 (line 1 column 100003)"],
      ["[" + "1,\n".repeat(50000) + "1] 2", "Unexpected non-whitespace character after JSON at position 150004 (line 50001 column 4)"],
      ["[" + "1,".repeat(50000) + '"a\n"]', "Bad control character in string literal in JSON at position 100003 (line 1 column 100004)"],
      ["[" + "1,".repeat(50000), "Unexpected end of JSON input"],
      // Malformed around the parts the text is split into.
      ["[" + big + " 5, 1]", "Expected ',' or ']' after array element in JSON at position 80005 (line 1 column 80006)"],
      ['{"k":1,123:' + big + "}", "Expected double-quoted property name in JSON at position 7 (line 1 column 8)"],
      ['{"k" ' + big + "}", "Expected ':' after property name in JSON at position 5 (line 1 column 6)"],
      ["[" + "1,".repeat(40000) + ",2]", `Unexpected token ',', ..."1,1,1,1,1,,2]" is not valid JSON`],
      ["[" + "1,".repeat(40000) + "]", `Unexpected token ']', ..."1,1,1,1,1,]" is not valid JSON`],
      ["[" + "1,".repeat(40000) + "1}", "Expected ',' or ']' after array element in JSON at position 80002 (line 1 column 80003)"],
      ["[" + '"a",'.repeat(20000) + '"b\\q"]', "Bad escaped character in JSON at position 80004 (line 1 column 80005)"],
    ];
    for (const [text, message] of errors) {
      try {
        JSON.parse(text);
        check("throws: " + message, false);
      } catch (e) {
        check(`SyntaxError: ${message}, got ${e}`, e instanceof SyntaxError && e.message === message);
      }
    }
    // A reviver, a non-string, Request and Response bodies.
    const text = JSON.stringify(list(3000));
    const revived = JSON.parse(text, (k, v) => (k === "i" ? v + 1 : v));
    check("reviver", revived[2999].i === 3000);
    check("toString", JSON.parse({ toString: () => text }).length === 3000);
    check("Response.json", (await new Response(text).json())[1234].i === 1234);
    const req = new Request("http://x/", { method: "POST", body: text });
    check("Request.json", (await req.json()).length === 3000);
    check("name and length", JSON.parse.name === "parse" && JSON.parse.length === 2);
    return Response.json({ failed });
  },
};
