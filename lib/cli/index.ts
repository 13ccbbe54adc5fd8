// Public exports of the tools, as the `netloop/compare` subpath: the close contract observed in
// every I/O mode (what `netloop compare` prints), and the close reports of `netloop echo
// --log-close`. Apart from the library's index.ts, which never imports the tools.
export { compareModes, formatComparison, CLOSE_EVENTS, MODE_COLUMNS } from './compare.js';
export type { ComparisonRow, Cell, ColumnCells, CompareOptions, ModeColumn } from './compare.js';
export { describeError, formatError, reportClose } from './close-report.js';
export type { CloseReport, ErrorReport } from './close-report.js';
