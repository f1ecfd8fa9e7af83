// Settings > Network Adapter: NAT (with restricted mode and host port forwards) or a host
// bridge, and the MAC address. The services check what is entered when Settings applies it.
import type { NetworkAdapter, PortForward } from '../../../app/api/config';
import { Row } from './common';

const newForward = (): PortForward => ({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 });
// An empty or partial number stays 0, which the services refuse naming the field.
const port = (text: string): number => (/^\d+$/.test(text) ? Number(text) : 0);

// A port number cell; empty while the entry is 0 (not a port).
function PortCell(props: { label: string; value: number; onChange: (port: number) => void }) {
  return (
    <td>
      <input
        aria-label={props.label}
        type="text"
        inputMode="numeric"
        value={props.value === 0 ? '' : String(props.value)}
        onChange={(e) => props.onChange(port(e.target.value))}
      />
    </td>
  );
}

// The adapter without one of its optional NAT fields (absent, not undefined, in the config).
function without(n: NetworkAdapter, key: 'restricted' | 'portForwards'): NetworkAdapter {
  return Object.fromEntries(Object.entries(n).filter(([k]) => k !== key)) as NetworkAdapter;
}

export function NetworkAdapterPage(props: {
  adapter: NetworkAdapter | undefined;
  disabled: boolean;
  onChange: (n: NetworkAdapter) => void;
  onRemove: () => void;
}) {
  const n = props.adapter;
  if (!n) return null;
  const forwards = n.portForwards ?? [];
  const setForwards = (next: PortForward[]) => {
    const rest = without(n, 'portForwards');
    props.onChange(next.length > 0 ? { ...rest, portForwards: next } : rest);
  };
  const setForward = (i: number, f: PortForward) => setForwards(forwards.map((g, j) => (j === i ? f : g)));
  return (
    <fieldset disabled={props.disabled}>
      <legend>Network Adapter</legend>
      <Row label="Connection:">
        <select
          value={n.kind}
          onChange={(e) =>
            props.onChange(
              e.target.value === 'bridge'
                ? { kind: 'bridge', mac: n.mac, bridge: n.bridge ?? 'br0' }
                : { kind: 'nat', mac: n.mac },
            )
          }
        >
          <option value="nat">NAT (user mode)</option>
          <option value="bridge">Host bridge</option>
        </select>
      </Row>
      {n.kind === 'bridge' ? (
        <Row label="Bridge:">
          <input
            type="text"
            value={n.bridge ?? ''}
            onChange={(e) => props.onChange({ ...n, bridge: e.target.value })}
          />
        </Row>
      ) : (
        <>
          <label className="check">
            <input
              type="checkbox"
              checked={n.restricted === true}
              onChange={(e) => {
                const rest = without(n, 'restricted');
                props.onChange(e.target.checked ? { ...rest, restricted: true } : rest);
              }}
            />{' '}
            Restricted: the guest cannot open connections to the host or the outside (forwarded ports still reach it)
          </label>
          <table className="port-forwards" aria-label="Port forwards">
            <thead>
              <tr>
                <th>Protocol</th>
                <th>Host address</th>
                <th>Host port</th>
                <th>Guest port</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {forwards.map((f, i) => (
                <tr key={i}>
                  <td>
                    <select
                      aria-label="Protocol"
                      value={f.protocol}
                      onChange={(e) => setForward(i, { ...f, protocol: e.target.value === 'udp' ? 'udp' : 'tcp' })}
                    >
                      <option value="tcp">TCP</option>
                      <option value="udp">UDP</option>
                    </select>
                  </td>
                  <td>
                    <input
                      aria-label="Host address"
                      type="text"
                      value={f.hostAddress}
                      onChange={(e) => setForward(i, { ...f, hostAddress: e.target.value })}
                    />
                  </td>
                  <PortCell
                    label="Host port"
                    value={f.hostPort}
                    onChange={(p) => setForward(i, { ...f, hostPort: p })}
                  />
                  <PortCell
                    label="Guest port"
                    value={f.guestPort}
                    onChange={(p) => setForward(i, { ...f, guestPort: p })}
                  />
                  <td>
                    <button type="button" onClick={() => setForwards(forwards.filter((_, j) => j !== i))}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="hint">
            A forward sends connections to the host address and port to the guest&apos;s port (the guest has 10.0.2.15
            from the NAT&apos;s DHCP).
          </div>
          <div className="button-row">
            <button type="button" onClick={() => setForwards([...forwards, newForward()])}>
              Add Port Forward
            </button>
          </div>
        </>
      )}
      <Row label="MAC address:">
        <input type="text" value={n.mac} onChange={(e) => props.onChange({ ...n, mac: e.target.value })} />
      </Row>
      <div className="button-row">
        <button type="button" onClick={props.onRemove}>
          Remove
        </button>
      </div>
    </fieldset>
  );
}
