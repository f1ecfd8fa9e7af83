// Settings > Network Adapter: NAT (with restricted mode and host port forwards) or a host
// bridge, and the MAC address. The services check what is entered when Settings applies it.
import type { NetworkAdapter, PortForward } from '../../../app/api/config';
import { Row } from './common';

const newForward = (): PortForward => ({ protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 });
// An empty or partial number stays 0, which the services refuse naming the field.
const port = (text: string): number => (/^\d+$/.test(text) ? Number(text) : 0);

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
                  <td>
                    <input
                      aria-label="Host port"
                      type="text"
                      inputMode="numeric"
                      value={f.hostPort === 0 ? '' : String(f.hostPort)}
                      onChange={(e) => setForward(i, { ...f, hostPort: port(e.target.value) })}
                    />
                  </td>
                  <td>
                    <input
                      aria-label="Guest port"
                      type="text"
                      inputMode="numeric"
                      value={f.guestPort === 0 ? '' : String(f.guestPort)}
                      onChange={(e) => setForward(i, { ...f, guestPort: port(e.target.value) })}
                    />
                  </td>
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
