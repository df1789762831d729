import { InputError } from '../errors.js';

/** DICOM UIDs are at most 64 characters of digits and dots (PS3.5 §9.1). */
export const MAX_UID_LENGTH = 64;

const UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** True when `uid` is syntactically valid: dot-separated components without leading zeros, ≤ 64 chars. */
export function isValidUid(uid: string): boolean {
  return uid.length > 0 && uid.length <= MAX_UID_LENGTH && UID_PATTERN.test(uid);
}

function random128(): bigint {
  const bytes = new Uint8Array(16);
  // Web Crypto exists in browsers and in Node ≥ 19 as a global, so this stays browser-safe.
  globalThis.crypto.getRandomValues(bytes);
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** A random version-4 UUID as a 128-bit integer (RFC 4122 version and variant bits set). */
function randomUuidValue(): bigint {
  let n = random128();
  n = (n & ~(0xfn << 76n)) | (0x4n << 76n);
  n = (n & ~(0x3n << 62n)) | (0x2n << 62n);
  return n;
}

/**
 * A new globally unique UID. Without a root it is "2.25.<UUID as decimal>" (ITU-T X.667 / PS3.5
 * §B.2), which needs no registered organisation root. With `root` (the site's registered root) it
 * is "<root>.<random decimal>" using as many random digits as fit in 64 characters — at least 20
 * digits are required so collisions stay as unlikely as with a UUID-derived UID.
 */
export function newUid(root?: string): string {
  if (root === undefined) return `2.25.${randomUuidValue().toString()}`;
  if (!isValidUid(root)) throw new InputError(`invalid UID root "${root}" (digits and dots, no leading zeros)`);
  const room = MAX_UID_LENGTH - root.length - 1;
  if (room < 20) {
    throw new InputError(`UID root "${root}" is too long: it leaves ${room} digits for the unique part, need at least 20`);
  }
  let digits = '';
  while (digits.length < room) digits += random128().toString();
  digits = digits.slice(0, room).replace(/^0+/, '');
  if (digits.length === 0) digits = '1';
  return `${root}.${digits}`;
}
