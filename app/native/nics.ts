// Network cards (virtio-net) of a VM configuration and their checks.
import { NativeError } from './errors';

export interface PortForward {
  protocol: 'tcp' | 'udp';
  // The host address to listen on (IPv4); default 127.0.0.1.
  hostAddress?: string;
  hostPort: number;
  // On the guest's DHCP address, 10.0.2.15.
  guestPort: number;
}

export interface NicConfig {
  // 'nat': user-mode NAT through libslirp (no privileges): guest network 10.0.2.0/24,
  // gateway 10.0.2.2, DNS 10.0.2.3, DHCP lease 10.0.2.15.
  // 'tap': bridged through a host tap device (needs CAP_NET_ADMIN unless the tap exists
  // and belongs to the user): NET_TAP_PERMISSION, NET_TAP_UNAVAILABLE, NET_BRIDGE_NOT_FOUND.
  kind: 'nat' | 'tap';
  // Unicast, e.g. '52:54:00:12:34:56'.
  mac: string;
  // NAT: the guest cannot open connections to the outside; port forwards still work.
  restricted?: boolean;
  // NAT: host ports forwarded to the guest (NET_PORT_FORWARD when one cannot be bound).
  portForwards?: PortForward[];
  // TAP: an existing tap device, or the name of a new one (default: the kernel picks tapN).
  tapName?: string;
  // TAP: a bridge (it must exist) to attach the tap device to.
  bridge?: string;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function invalid(message: string): NativeError {
  return new NativeError('INVALID_ARGUMENT', message);
}

function checkPort(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(`${where} must be a port number from 1 to 65535, not ${String(value)}`);
  }
  return value;
}

function checkForwards(forwards: unknown, where: string): PortForward[] {
  if (forwards === undefined) return [];
  if (!Array.isArray(forwards)) throw invalid(`${where}.portForwards must be an array`);
  const seen = new Set<string>();
  return forwards.map((forward: unknown, j): PortForward => {
    const at = `${where}.portForwards[${j}]`;
    if (typeof forward !== 'object' || forward === null) throw invalid(`${at} must be an object`);
    const { protocol = 'tcp', hostAddress = '127.0.0.1', hostPort, guestPort } = forward as Record<string, unknown>;
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalid(`${at}.protocol must be 'tcp' or 'udp'`);
    if (typeof hostAddress !== 'string' || !IPV4.test(hostAddress)) {
      throw invalid(`${at}.hostAddress must be an IPv4 address like 127.0.0.1`);
    }
    const out: PortForward = {
      protocol,
      hostAddress,
      hostPort: checkPort(hostPort, `${at}.hostPort`),
      guestPort: checkPort(guestPort, `${at}.guestPort`),
    };
    const key = `${protocol} ${hostAddress}:${out.hostPort}`;
    if (seen.has(key)) throw invalid(`${at}: ${key} is forwarded twice`);
    seen.add(key);
    return out;
  });
}

// Validates the nics of a configuration; returns copies with defaults filled in.
export function checkNics(nics: unknown): NicConfig[] {
  if (nics === undefined) return [];
  if (!Array.isArray(nics)) throw invalid('nics must be an array');
  const macs = new Set<string>();
  return nics.map((nic: unknown, i): NicConfig => {
    const where = `nics[${i}]`;
    if (typeof nic !== 'object' || nic === null) throw invalid(`${where} must be an object`);
    const { kind, mac, restricted, portForwards, tapName, bridge } = nic as Record<string, unknown>;
    if (kind !== 'nat' && kind !== 'tap') throw invalid(`${where}.kind must be 'nat' or 'tap'`);
    if (typeof mac !== 'string' || !MAC.test(mac)) {
      throw invalid(`${where}.mac must be a MAC address like 52:54:00:12:34:56, not ${String(mac)}`);
    }
    if (parseInt(mac.slice(0, 2), 16) & 1) {
      throw invalid(`${where}.mac ${mac} is a multicast address; a network card needs a unicast one`);
    }
    if (/^(00:){5}00$/.test(mac)) throw invalid(`${where}.mac must not be all zeros`);
    const lower = mac.toLowerCase();
    if (macs.has(lower)) throw invalid(`${where}.mac ${mac} is used by another network card of this VM`);
    macs.add(lower);
    if (restricted !== undefined && typeof restricted !== 'boolean') {
      throw invalid(`${where}.restricted must be true or false`);
    }
    const out: NicConfig = { kind, mac: lower };
    if (kind === 'nat') {
      if (tapName !== undefined || bridge !== undefined) {
        throw invalid(`${where}: tapName and bridge apply to kind 'tap' only`);
      }
      out.restricted = restricted ?? false;
      out.portForwards = checkForwards(portForwards, where);
    } else {
      if (restricted !== undefined || portForwards !== undefined) {
        throw invalid(`${where}: restricted and portForwards apply to kind 'nat' only`);
      }
      if (tapName !== undefined) {
        if (typeof tapName !== 'string' || !IFNAME.test(tapName)) {
          throw invalid(`${where}.tapName must be an interface name of 1 to 15 letters, digits, '_', '.' or '-'`);
        }
        out.tapName = tapName;
      }
      if (bridge !== undefined) {
        if (typeof bridge !== 'string' || !IFNAME.test(bridge)) {
          throw invalid(`${where}.bridge must be an interface name of 1 to 15 letters, digits, '_', '.' or '-'`);
        }
        out.bridge = bridge;
      }
    }
    return out;
  });
}
