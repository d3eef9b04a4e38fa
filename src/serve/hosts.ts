import { isIPv4, isIPv6 } from 'node:net';
import { FghError } from '../util/errors.js';

/** Which Host headers `fgh serve` answers (the --allow-host parser runs before the server is loaded). */

/** A Host header's name, lowercased, without the port or a trailing dot; null if malformed. */
function hostName(header: string): string | null {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(header.trim().toLowerCase());
  return m ? m[1]!.replace(/\.$/, '') : null;
}

/** A name as hostName gives it: lowercased, IPv6 addresses in brackets. */
export function normaliseName(name: string): string {
  const n = name.trim().toLowerCase().replace(/\.$/, '');
  return isIPv6(n) ? `[${n}]` : n;
}

export function checkAllowHost(name: string): string {
  const n = normaliseName(name);
  if (!/^([a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])$/.test(n)) throw new FghError(`--allow-host takes a host name without a port, got "${name}"`);
  return n;
}

/**
 * DNS rebinding: a page from evil.example whose name later resolves to 127.0.0.1 reaches this
 * server as same-origin, and could read the gallery and the model; its requests still carry
 * `Host: evil.example`. IP addresses are safe to accept (a page whose origin is an address is
 * served by that address), so binding 0.0.0.0 still works from another machine by address.
 */
export function hostAllowed(header: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (!header) return false;
  const name = hostName(header);
  if (name === null) return false;
  if (allowed.has(name)) return true;
  return name.startsWith('[') ? isIPv6(name.slice(1, -1)) : isIPv4(name);
}
