// Fuzz target: permessage-deflate negotiation
// (lib/websocket/deflate-negotiation.ts): parsing Sec-WebSocket-Extensions
// values, the server's choice among offers, the client's check of a
// response, and the two sides against each other.
//
// Input: byte 0 picks the server's and the client's options (bits 0-1 and
// 2-3); with bit 7 set, bytes 1-3 instead describe a client and a server
// configuration whose negotiation must succeed; the rest is the header value
// (Latin-1, as the parsers decode header bytes).
//
// Invariants: parseExtensions returns elements whose names and parameter
// names are tokens, or throws ExtensionNegotiationError
// WS_ERR_INVALID_EXTENSIONS_SYNTAX, nothing else; the elements written back
// (values quoted when they are not tokens) parse to themselves;
// negotiateServer returns null, or a response that parses to one
// permessage-deflate element and parameters in range (window bits 8..15,
// never above the server's own limits), and throws only what parseExtensions
// throws; acceptClientResponse never throws; a client's own offer
// (offerClient) answered by any server configuration is accepted by that
// client with the same parameters the server agreed to.
import {
  parseExtensions,
  negotiateServer,
  acceptClientResponse,
  offerClient,
  ExtensionNegotiationError,
} from '../../dist/websocket/deflate-negotiation.js';
import { check, checkEqual, isTokenString } from './common.js';

export const maxLen = 1024;
export const dictionary = ['permessage-deflate', 'server_no_context_takeover', 'client_no_context_takeover', 'server_max_window_bits', 'client_max_window_bits', '=', '="10"', '=8', '=15', '=16', '=08', ';', ',', ' ', '\t', '"', '\\', '\\"', 'x-webkit-deflate-frame', '\xff'];

const SERVER = [{}, { serverNoContextTakeover: true, clientMaxWindowBits: 10 }, { serverMaxWindowBits: 9, clientNoContextTakeover: true }, { clientMaxWindowBits: 8, serverMaxWindowBits: 12 }];
const CLIENT = [{}, { serverNoContextTakeover: true }, { clientMaxWindowBits: 11, serverMaxWindowBits: 10 }, { offerClientMaxWindowBits: false, clientNoContextTakeover: true }];
const RESPONSE_CODES = ['WS_ERR_INVALID_EXTENSIONS_SYNTAX', 'WS_ERR_UNEXPECTED_EXTENSION', 'WS_ERR_INVALID_DEFLATE_RESPONSE'];

const quote = (v) => (isTokenString(v) ? v : `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`);
const format = (elements) => elements.map((e) => [e.name, ...e.params.map(([n, v]) => (v === true ? n : `${n}=${quote(v)}`))].join('; ')).join(', ');

/** Options from a byte: every combination of the flags, and window bits 8..15 or unset. */
function optionsFrom(a, b) {
  const o = {};
  if (a & 1) o.serverNoContextTakeover = true;
  if (a & 2) o.clientNoContextTakeover = true;
  if (a & 4) o.offerClientMaxWindowBits = false;
  if (b & 0x10) o.serverMaxWindowBits = 8 + (b & 7);
  if (b & 0x20) o.clientMaxWindowBits = 8 + ((b >> 6) | ((a >> 3) & 1)) * 2 + ((a >> 4) & 1);
  return o;
}

function checkParams(p, what) {
  for (const k of ['serverMaxWindowBits', 'clientMaxWindowBits']) check(Number.isInteger(p[k]) && p[k] >= 8 && p[k] <= 15, `${what}: ${k} in 8..15`, p);
  for (const k of ['serverNoContextTakeover', 'clientNoContextTakeover']) check(typeof p[k] === 'boolean', `${what}: ${k} is a boolean`, p);
}

function pair(data) {
  const client = optionsFrom(data[1], data[2]);
  const server = optionsFrom(data[3], data[2] ^ 0x30);
  delete server.offerClientMaxWindowBits;
  const offer = offerClient(client);
  const agreed = negotiateServer(offer, server);
  if (agreed === null) return 'declined';
  checkParams(agreed.params, 'server agreement');
  const accepted = acceptClientResponse(agreed.response, client);
  check(!(accepted instanceof Error), 'the client accepts what the server answered to its own offer', { client, server, offer, response: agreed.response, accepted });
  checkEqual(accepted, agreed.params, 'both sides agree on the parameters');
  return 'agreed';
}

export function fuzz(data) {
  if (data.length < 1) return 'empty';
  if (data[0] & 0x80) {
    if (data.length < 4) return 'short';
    return `pair:${pair(data)}`;
  }
  const value = data.subarray(1).toString('latin1');
  let elements;
  try {
    elements = parseExtensions(value);
  } catch (err) {
    check(err instanceof ExtensionNegotiationError && err.code === 'WS_ERR_INVALID_EXTENSIONS_SYNTAX', 'parseExtensions throws only the syntax error', err);
    let threw = null;
    try {
      negotiateServer(value, SERVER[data[0] & 3]);
    } catch (e) {
      threw = e;
    }
    check(threw instanceof ExtensionNegotiationError && threw.code === err.code, 'negotiateServer throws what parseExtensions throws', threw);
    const r = acceptClientResponse(value, CLIENT[(data[0] >> 2) & 3]);
    check(r instanceof ExtensionNegotiationError && r.code === err.code, 'acceptClientResponse returns the syntax error', r);
    return `syntax:${err.message.replace(/ at offset \d+/, '')}`;
  }
  for (const e of elements) {
    check(isTokenString(e.name), 'extension name is a token', e);
    for (const [n, v] of e.params) check(isTokenString(n) && (v === true || typeof v === 'string'), 'parameter name is a token', e);
  }
  checkEqual(parseExtensions(format(elements)), elements, 'written back, the elements parse to themselves');
  const server = SERVER[data[0] & 3];
  const agreed = negotiateServer(value, server);
  let what = 'declined';
  if (agreed !== null) {
    checkParams(agreed.params, 'server agreement');
    if (server.serverMaxWindowBits !== undefined) check(agreed.params.serverMaxWindowBits <= server.serverMaxWindowBits, 'server window within its own limit');
    if (server.clientMaxWindowBits !== undefined) check(agreed.params.clientMaxWindowBits <= server.clientMaxWindowBits, 'client window within the server limit');
    const back = parseExtensions(agreed.response);
    check(back.length === 1 && back[0].name === 'permessage-deflate', 'the response is one permessage-deflate element', agreed.response);
    what = 'agreed';
  }
  const r = acceptClientResponse(value, CLIENT[(data[0] >> 2) & 3]);
  if (r instanceof Error) check(r instanceof ExtensionNegotiationError && RESPONSE_CODES.includes(r.code), 'documented response error', r);
  else if (r !== null) checkParams(r, 'client acceptance');
  return `${what}:${r instanceof Error ? r.code : r === null ? 'none' : 'pmd'}:${Math.min(elements.length, 4)}`;
}
