// The close-reporting contract, observed: every row of DESIGN.md's table is
// played against each I/O mode (non-blocking, blocking, mixed on both sides
// of maxBlockingOnline) with a real client over loopback, and the table it
// observed is printed; a cell that differs from the contract is marked ✗.
//
//   npm run build && node dist/examples/mode-comparison.js
//
// The same as `npx netloop compare`; this is how to do it from code, e.g. to
// check a deployment's kernel and Node version before relying on the table.
import { compareModes, formatComparison, type ComparisonRow } from 'netloop/compare';

const started = Date.now();
const rows: ComparisonRow[] = await compareModes((row) => {
  const differs = [...row.onClose, row.handler, row.wire, row.info].some((c) => !c.ok);
  process.stderr.write(`${differs ? '✗' : '✓'} ${row.event}\n`);
});
const { table, marked } = formatComparison(rows);
console.log(table);
console.log(`\n${rows.length} rows in ${Date.now() - started} ms; ${marked === 0 ? 'every cell matches the contract' : `${marked} cell(s) differ`}`);
process.exitCode = marked === 0 ? 0 : 1;
