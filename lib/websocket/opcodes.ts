// Frame opcodes (RFC 6455 §5.2, §11.8). Plain numbers rather than a const
// enum so that JavaScript callers (tests, users of dist/) see real values.

export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

export type OpcodeValue = (typeof Opcode)[keyof typeof Opcode];

/** The type of a data message as users see it. */
export type MessageType = 'text' | 'binary';

/** Control frames (close, ping, pong) have the high bit of the opcode set (§5.5). */
export function isControlOpcode(opcode: number): boolean {
  return (opcode & 0x8) !== 0;
}

/** True for the six opcodes RFC 6455 defines; 0x3-0x7 and 0xB-0xF are reserved. */
export function isKnownOpcode(opcode: number): boolean {
  return opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xa);
}

/** Control frames carry at most 125 bytes of payload (§5.5), so their length always fits the 7-bit field. */
export const MAX_CONTROL_PAYLOAD = 125;
