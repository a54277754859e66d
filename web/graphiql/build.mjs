// Copies the files Kiln's GraphiQL page loads (schema/graphiql.html) from node_modules into
// assets/, which is committed and served by Kiln at /graphql/assets/: the page then needs no
// CDN, and `uv run server.py` needs no Node.
//
//   cd web/graphiql && npm ci && npm run build
//
// The versions are the exact ones in package.json (locked by package-lock.json), the ones
// Strawberry's page loaded from unpkg. Files published minified are copied byte for byte;
// graphiql's "min" files are published unminified (3.5 MB), so esbuild minifies them.
// Every package's licence file goes into assets/licenses/, with the notices of the packages
// graphiql.min.js bundles.

import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { transformSync } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const out = join(here, "assets");
const licenses = join(out, "licenses");

// [package, file in the package, name in assets/, how]
const FILES = [
  ["react", "umd/react.production.min.js", "react.production.min.js", "copy"],
  ["react-dom", "umd/react-dom.production.min.js", "react-dom.production.min.js", "copy"],
  ["graphiql", "graphiql.min.js", "graphiql.min.js", "minify"],
  ["graphiql", "graphiql.min.css", "graphiql.min.css", "minify"],
  ["@graphiql/plugin-explorer", "dist/index.umd.js", "plugin-explorer.umd.js", "copy"],
  ["@graphiql/plugin-explorer", "dist/style.css", "plugin-explorer.css", "copy"],
  ["graphql-ws", "umd/graphql-ws.min.js", "graphql-ws.min.js", "copy"],
];

// Licence files: the packages served, and graphiql-explorer, which the explorer plugin
// bundles. @graphiql/plugin-explorer ships no licence file of its own: it comes from the
// graphiql repository, under graphiql's licence.
const LICENSE_OF = {
  react: "react/LICENSE",
  "react-dom": "react-dom/LICENSE",
  graphiql: "graphiql/LICENSE",
  "@graphiql/plugin-explorer": "graphiql/LICENSE",
  "graphiql-explorer": "@graphiql/plugin-explorer/node_modules/graphiql-explorer/LICENSE",
  "graphql-ws": "graphql-ws/LICENSE.md",
};

function packageJson(path) {
  return JSON.parse(readFileSync(join(path, "package.json"), "utf8"));
}

function checkVersions() {
  const wanted = packageJson(here).dependencies;
  for (const [name, version] of Object.entries(wanted)) {
    const installed = packageJson(join(modules, name)).version;
    if (installed !== version) {
      throw new Error(`${name} ${installed} installed, ${version} wanted: run npm ci`);
    }
  }
  return wanted;
}

function minify(source, name) {
  const loader = name.endsWith(".css") ? "css" : "js";
  // legalComments: keep the bundled packages' licence comments; no source map comment.
  return transformSync(source, { loader, minify: true, legalComments: "inline" }).code;
}

// The packages graphiql.min.js bundles (webpack names each module by its path), with the
// licence each declares and its licence text, as installed beside graphiql.
function bundledNotices(bundle) {
  const names = new Set();
  for (const match of bundle.matchAll(/node_modules\/((?:@[\w.-]+\/)?[\w.-]+)\//g)) {
    names.add(match[1]);
  }
  const sections = [];
  for (const name of [...names].sort()) {
    const candidates = [join(modules, "graphiql/node_modules", name), join(modules, name)];
    const dir = candidates.find((path) => existsSync(join(path, "package.json")));
    if (!dir) {
      sections.push(`${name}: not installed here; see its package on the npm registry`);
      continue;
    }
    const meta = packageJson(dir);
    const file = ["LICENSE", "LICENSE.md", "LICENSE.txt", "license", "LICENCE"]
      .map((f) => join(dir, f))
      .find((path) => existsSync(path));
    const text = file ? readFileSync(file, "utf8").trim() : "(no licence file in the package)";
    sections.push(`${name} (${meta.license}):\n\n${text}`);
  }
  return (
    "graphiql.min.js bundles these packages (found by their module paths in the bundle; " +
    "licence texts as installed beside graphiql):\n\n" +
    sections.join("\n\n" + "-".repeat(72) + "\n\n") +
    "\n"
  );
}

const versions = checkVersions();
rmSync(out, { recursive: true, force: true });
mkdirSync(licenses, { recursive: true });

const lines = [];
for (const [pkg, file, name, how] of FILES) {
  const source = join(modules, pkg, file);
  const target = join(out, name);
  if (how === "copy") {
    copyFileSync(source, target);
  } else {
    writeFileSync(target, minify(readFileSync(source, "utf8"), name));
  }
  const sha = createHash("sha384").update(readFileSync(target)).digest("base64");
  lines.push(`${name}\t${pkg}@${versions[pkg]}/${file}\t${how}\tsha384-${sha}`);
}
for (const [pkg, file] of Object.entries(LICENSE_OF)) {
  copyFileSync(join(modules, file), join(licenses, `${pkg.replace("@", "").replace("/", "-")}.LICENSE`));
}
writeFileSync(
  join(licenses, "graphiql-bundled-packages.txt"),
  bundledNotices(readFileSync(join(modules, "graphiql/graphiql.min.js"), "utf8")),
);
writeFileSync(join(out, "SOURCES.tsv"), ["file\tfrom\thow\tintegrity", ...lines, ""].join("\n"));
console.log(lines.join("\n"));
