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

/**
 * The elements of a comma-separated list (#element, RFC 9110 §5.6.1):
 * split at commas, optional whitespace around each element removed, empty
 * elements ignored as the RFC requires of recipients. "keep-alive, Upgrade"
 * gives [ 'keep-alive', 'Upgrade' ].
 */
export function listElements(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const element = part.replace(/^[ \t]+|[ \t]+$/g, '');
    if (element !== '') out.push(element);
  }
  return out;
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
