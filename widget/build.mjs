// Builds dist/lakeside-chat.js (one self-contained script, socket.io-client bundled)
// and dist/lakeside-chat.css from src/. Run by `make widget` (part of `make setup`).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/index.js"],
  bundle: true,
  format: "iife",
  minify: true,
  sourcemap: true,
  target: ["es2019"],
  outfile: "dist/lakeside-chat.js",
  legalComments: "linked",
});
copyFileSync("src/widget.css", "dist/lakeside-chat.css");
console.log("built dist/lakeside-chat.js and dist/lakeside-chat.css");
