// Render TeX to HTML with KaTeX at build time (used by tools/docs_hooks.py).
// Reads one JSON request per line on stdin: [[tex, displayMode], ...]; writes one JSON line back:
// [{"html": ...} | {"error": ...}, ...]. argv[2] is the path of KaTeX's dist/katex.js.
"use strict";
const katex = require(process.argv[2]);
const readline = require("readline");
const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on("line", (line) => {
  const out = JSON.parse(line).map(([tex, display]) => {
    try {
      return { html: katex.renderToString(tex, { displayMode: display, throwOnError: true, strict: "error",
                                                 output: "htmlAndMathml" }) };
    } catch (e) {
      return { error: String(e.message || e) };
    }
  });
  process.stdout.write(JSON.stringify(out) + "\n");
});
