// Character classes of HTTP/1.1 (RFC 9110 §5.6.2 tokens, §5.5 field values,
// RFC 9112 §3.2 request-target) as 256-entry tables, and the comma-separated
// lists built from them (§5.6.1).

function table(accept: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = accept(c) ? 1 : 0;
  return t;
}

const isAlnum = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** tchar: the characters of methods, header names and list tokens. */
export const TOKEN_CHAR = table((c) => isAlnum(c) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)));

/**
 * Characters of a request-target: visible ASCII. No spaces or controls, and
 * no bytes above 0x7E: a URI is ASCII (RFC 3986), anything else must be
 * percent-encoded by the client.
 */
export const TARGET_CHAR = table((c) => c >= 0x21 && c <= 0x7e);

/** Characters inside a field value: VCHAR, obs-text (0x80-0xFF), SP and HTAB. Never CR, LF, NUL or other controls. */
export const VALUE_CHAR = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TOKEN_CHAR[c] === 0) return false;
  }
  return true;
}

/** True if `s` can be sent as a field value (no CR, LF or other control characters, nothing above U+00FF). */
export function isValidFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || VALUE_CHAR[c] === 0) return false;
  }
  return true;
}

const SP = 0x20;
const HTAB = 0x09;

/**
 * `s` without the optional whitespace (SP, HTAB; RFC 9110 §5.6.3) at either
 * end. An index loop, not a pattern: every string this sees came from a
 * peer, and a backtracking pattern such as /[ \t]+$/ costs time quadratic
 * in a run of spaces that does not end the string ("a", 8,000 spaces, "b"
 * took 50 ms a header).
 */
export function trimOws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s.charCodeAt(start) === SP || s.charCodeAt(start) === HTAB)) start++;
  while (end > start && (s.charCodeAt(end - 1) === SP || s.charCodeAt(end - 1) === HTAB)) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/**
 * The elements of a comma-separated list (#element, RFC 9110 §5.6.1):
 * split at commas, optional whitespace around each element removed, empty
 * elements ignored as the RFC requires of recipients. "keep-alive, Upgrade"
 * gives [ 'keep-alive', 'Upgrade' ]. Linear in the length of `value`: each
 * character is looked at once by indexOf and at most once by trimOws.
 */
export function listElements(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const comma = value.indexOf(',', start);
    const element = trimOws(value.slice(start, comma === -1 ? value.length : comma));
    if (element !== '') out.push(element);
    if (comma === -1) return out;
    start = comma + 1;
  }
}

/** Whether the list `value` has an element equal to `token`, ignoring ASCII case. */
export function listHasToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  const wanted = token.toLowerCase();
  for (const element of listElements(value)) {
    if (element.toLowerCase() === wanted) return true;
  }
  return false;
}
