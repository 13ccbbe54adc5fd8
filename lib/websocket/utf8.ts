// Streaming UTF-8 validation (RFC 3629; the Unicode Standard, table 3-7
// "Well-Formed UTF-8 Byte Sequences").
//
// WebSocket text must be valid UTF-8 and an endpoint must fail the connection
// as soon as it sees invalid bytes (RFC 6455 §8.1), even in the middle of a
// frame. So the validator is fed whatever has arrived, carries an unfinished
// sequence over to the next call (next read, next fragment), and reports
// failure at the first byte that makes the text invalid whatever follows.
//
// The state is the number of continuation bytes still expected plus the range
// the next one must fall in. The range is what rejects, at the earliest
// byte, overlong forms (E0 80..9F, F0 80..8F; C0 and C1 are never valid),
// UTF-16 surrogates U+D800..DFFF (ED A0..BF) and code points above U+10FFFF
// (F4 90..BF; F5..FF are never valid).
import { isUtf8 } from 'node:buffer';

// Runs at least this long are handed to Node's native validator (simdutf):
// below it the call and the subarray cost more than the JavaScript loop.
const NATIVE_MIN = 64;

/**
 * Where a trailing, not yet complete sequence begins in bytes[start..end),
 * or `end` if the run ends on a character boundary (or is invalid in a way
 * the native validator will see). Looks at the last four bytes at most.
 */
function incompleteTailStart(bytes: Uint8Array, start: number, end: number): number {
  let j = end - 1;
  let continuations = 0;
  while (j >= start && continuations < 3 && (bytes[j]! & 0xc0) === 0x80) {
    j--;
    continuations++;
  }
  if (j < start) return start; // nothing but continuation bytes: let the byte loop judge them
  const lead = bytes[j]!;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return length > continuations + 1 ? j : end;
}

export class Utf8Validator {
  /** Continuation bytes still expected by the current sequence. */
  #need = 0;
  /** Range the next continuation byte must fall in. */
  #lo = 0x80;
  #hi = 0xbf;
  #failed = false;

  /**
   * Validates bytes[start..end) as the continuation of what was fed before.
   * Returns false as soon as the text is known to be invalid, and keeps
   * returning false until reset(). A sequence cut at `end` is fine here:
   * end() decides whether the text may stop there.
   */
  feed(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
    if (this.#failed) return false;
    let i = start;
    let need = this.#need;
    let lo = this.#lo;
    let hi = this.#hi;
    // Finish a sequence begun by an earlier call.
    while (need > 0 && i < end) {
      const b = bytes[i++]!;
      if (b < lo || b > hi) return this.#fail();
      need--;
      lo = 0x80;
      hi = 0xbf;
    }
    if (need === 0 && end - i >= NATIVE_MIN) {
      const cut = incompleteTailStart(bytes, i, end);
      if (cut - i >= NATIVE_MIN) {
        if (!isUtf8(bytes.subarray(i, cut))) return this.#fail();
        i = cut;
      }
    }
    while (i < end) {
      if (need === 0) {
        // ASCII runs: one comparison per byte.
        while (i < end && bytes[i]! < 0x80) i++;
        if (i === end) break;
        const b = bytes[i++]!;
        if (b < 0xc2) return this.#fail(); // stray continuation (80..BF) or overlong 2-byte lead (C0, C1)
        if (b < 0xe0) {
          need = 1;
        } else if (b < 0xf0) {
          need = 2;
          if (b === 0xe0) lo = 0xa0; // below A0 would encode < U+0800 (overlong)
          else if (b === 0xed) hi = 0x9f; // A0..BF would encode U+D800..DFFF (surrogates)
        } else if (b < 0xf5) {
          need = 3;
          if (b === 0xf0) lo = 0x90; // below 90 would encode < U+10000 (overlong)
          else if (b === 0xf4) hi = 0x8f; // 90..BF would encode > U+10FFFF
        } else {
          return this.#fail(); // F5..FF start nothing valid
        }
      } else {
        const b = bytes[i++]!;
        if (b < lo || b > hi) return this.#fail();
        need--;
        lo = 0x80;
        hi = 0xbf;
      }
    }
    this.#need = need;
    this.#lo = lo;
    this.#hi = hi;
    return true;
  }

  /** True if the bytes fed so far end inside a sequence (more are needed to finish a character). */
  get midSequence(): boolean {
    return this.#need !== 0;
  }

  /**
   * The text ends here: returns true if everything fed was valid and ended on
   * a character boundary, false if it was invalid or stopped mid-sequence.
   * Resets the validator for the next text.
   */
  end(): boolean {
    const ok = !this.#failed && this.#need === 0;
    this.reset();
    return ok;
  }

  /** Forgets everything fed so far. */
  reset(): void {
    this.#need = 0;
    this.#lo = 0x80;
    this.#hi = 0xbf;
    this.#failed = false;
  }

  #fail(): false {
    this.#failed = true;
    return false;
  }
}

// Validation is synchronous and calls nothing, so one instance serves every one-shot check.
const oneShot = new Utf8Validator();

/** One-shot check of a complete text (for example a close reason). */
export function isValidUtf8(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
  if (end - start >= NATIVE_MIN) return isUtf8(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end));
  const ok = oneShot.feed(bytes, start, end);
  return oneShot.end() && ok;
}
