/**
 * Lists the exported symbols of src/ that no other src/ file uses (src/index.ts counts: what it re-exports is the
 * library's API), with who does use them — the module itself, tests, bench — so that dead code and exports kept
 * only for tests can be found rather than guessed:
 *
 *   node --import tsx bench/dead-exports.ts [--all]
 *
 * By default it prints only the symbols the module itself does not use either (dead, or alive only in tests or
 * bench); `--all` adds those the module uses internally (an `export` that could go). Uses are resolved by the
 * TypeScript compiler through imports, re-exports and aliases, so a name that merely looks alike never counts.
 * Exits 0 whatever it finds: it is a report, not a gate.
 */
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import ts from 'typescript';

const { values } = parseArgs({ options: { all: { type: 'boolean', default: false } } });
const root = resolve(import.meta.dirname, '..');
const parsed = ts.getParsedCommandLineOfConfigFile(
  resolve(root, 'tsconfig.json'),
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  },
);
if (!parsed) throw new Error('tsconfig.json could not be read');
const program = ts.createProgram(parsed.fileNames, parsed.options);
const checker = program.getTypeChecker();
const rel = (f: string) => relative(root, f);
const files = program
  .getSourceFiles()
  .filter((f) => !f.isDeclarationFile && !rel(f.fileName).startsWith('..'));

/** For each declared symbol, the files whose identifiers resolve to it (through any chain of aliases). */
const users = new Map<ts.Symbol, Set<string>>();
for (const file of files) {
  const name = rel(file.fileName);
  const visit = (node: ts.Node): void => {
    if (ts.isIdentifier(node)) {
      let symbol = checker.getSymbolAtLocation(node);
      const seen = new Set<ts.Symbol>();
      while (symbol && !seen.has(symbol)) {
        seen.add(symbol);
        // A declaration's own name is not a use of it.
        const declaresIt = symbol.declarations?.some((d) => (d as { name?: ts.Node }).name === node) ?? false;
        if (!declaresIt) {
          const set = users.get(symbol) ?? new Set<string>();
          set.add(name);
          users.set(symbol, set);
        }
        symbol = symbol.flags & ts.SymbolFlags.Alias ? checker.getImmediateAliasedSymbol(symbol) : undefined;
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

const rows: string[] = [];
for (const file of files) {
  const name = rel(file.fileName);
  if (!name.startsWith('src/') || name === 'src/index.ts') continue;
  const moduleSymbol = checker.getSymbolAtLocation(file);
  if (!moduleSymbol) continue;
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const decl = symbol.declarations?.[0];
    if (!decl || rel(decl.getSourceFile().fileName) !== name) continue; // a re-export: counted where declared
    const by = [...(users.get(symbol) ?? [])];
    if (by.some((f) => f.startsWith('src/') && f !== name)) continue;
    const self = by.includes(name);
    if (self && !values.all) continue;
    const line = file.getLineAndCharacterOfPosition(decl.getStart()).line + 1;
    const tests = by.filter((f) => f.startsWith('test/'));
    const bench = by.filter((f) => f.startsWith('bench/'));
    const where = [self ? 'its module' : '', ...tests, ...bench].filter(Boolean).join(', ') || 'nothing';
    rows.push(`${name}:${line} ${symbol.name} — used by ${where}`);
  }
}
console.log(rows.sort().join('\n'));
console.log(
  `${rows.length} exported symbols of src/ used by no other src/ file${values.all ? '' : ' nor their own'}`,
);
