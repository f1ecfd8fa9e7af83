// Connect: the console window of a VM. An xterm attached to COM1 through console.attach
// (the scrollback is replayed first), keystrokes go to the guest through console.input, and
// the toolbar has Ctrl+Alt+Del (reset), Start, Turn Off, Pause/Resume.
import { useQueryClient } from '@tanstack/react-query';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'react';

import { decodeBase64, encodeBase64 } from '../../app/api/bridge';
import { allows } from '../../app/api/lifecycle';
import type { VmSummary } from '../../app/api/vm';
import { call, useApi } from './context';
import { ErrorBox, errorText } from './dialogs/common';

export function ConsoleWindow({ vmId, vm, onClose }: { vmId: string; vm: VmSummary | undefined; onClose: () => void }) {
  const api = useApi();
  const client = useQueryClient();
  const host = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string>();
  const [ended, setEnded] = useState<string>();
  const state = vm?.state ?? 'Off';
  const attachable = allows(state, 'console');

  useEffect(() => {
    if (!attachable || !host.current) return;
    const term = new Terminal({
      // The guest's serial output ends lines with a bare \n, as a Unix tty would expect.
      convertEol: true,
      cursorBlink: true,
      fontFamily: 'Consolas, "DejaVu Sans Mono", monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: '#000000', foreground: '#c0c0c0' },
    });
    term.open(host.current);
    term.focus();
    let sessionId: string | null = null;
    let closed = false;
    // Output can arrive before console.attach answers (the replay): keep it until we know
    // which session is ours.
    const early: { sessionId: string; data?: string }[] = [];
    const write = (data: string | undefined) => {
      if (data) term.write(decodeBase64(data));
    };
    const off = api.subscribe('console', (p) => {
      if (p.vmId !== vmId) return;
      if (sessionId === null) {
        early.push({ sessionId: p.sessionId, ...(p.data !== undefined ? { data: p.data } : {}) });
        return;
      }
      if (p.sessionId !== sessionId) return;
      write(p.data);
      if (p.end) {
        setEnded(
          p.end.error ??
            (p.end.exit ? `The virtual machine stopped (${p.end.exit.reason}).` : 'The virtual machine stopped.'),
        );
      }
    });
    setEnded(undefined);
    api
      .invoke('console.attach', { vm: vmId, replay: true })
      .then((r) => {
        if (closed) {
          void api.invoke('console.detach', { sessionId: r.sessionId }).catch(() => undefined);
          return;
        }
        sessionId = r.sessionId;
        for (const e of early) if (e.sessionId === r.sessionId) write(e.data);
        early.length = 0;
        send(); // what was typed while attaching
      })
      .catch((e: unknown) => setError(errorText(e)));
    // Keystrokes go one request at a time, in order: concurrent requests may arrive out of
    // order over a slow link. What is typed meanwhile (or before the console is attached)
    // is sent together next.
    let pending = '';
    let sending = false;
    const send = (): void => {
      if (sending || pending === '' || sessionId === null) return;
      const data = pending;
      pending = '';
      sending = true;
      api
        .invoke('console.input', { sessionId, data: encodeBase64(data) })
        .catch((e: unknown) => setError(errorText(e)))
        .finally(() => {
          sending = false;
          send();
        });
    };
    const input = term.onData((data) => {
      pending += data;
      send();
    });
    return () => {
      closed = true;
      input.dispose();
      off();
      if (sessionId !== null) void api.invoke('console.detach', { sessionId }).catch(() => undefined);
      term.dispose();
    };
  }, [api, vmId, attachable]);

  const act = (method: 'vm.start' | 'vm.turnOff' | 'vm.pause' | 'vm.resume' | 'vm.reset') => {
    setError(undefined);
    call(api, client, method, { vm: vmId }).catch((e: unknown) => setError(errorText(e)));
  };

  return (
    <div className="modal-backdrop console-backdrop">
      <div
        className="console-window"
        role="dialog"
        aria-modal="true"
        aria-label={`${vm?.name ?? vmId} on this host - Virtual Machine Connection`}
      >
        <div className="dialog-title">
          <h2>{vm?.name ?? vmId} - Virtual Machine Connection</h2>
          <button type="button" className="close" aria-label="Close" onClick={onClose}>
            ✕
          </button>
        </div>
        <div className="console-toolbar" role="toolbar" aria-label="Virtual machine">
          <button
            type="button"
            title="Ctrl+Alt+Delete (reset)"
            disabled={!allows(state, 'reset')}
            onClick={() => act('vm.reset')}
          >
            Ctrl+Alt+Del
          </button>
          <span className="tb-sep" />
          <button type="button" disabled={!allows(state, 'start')} onClick={() => act('vm.start')}>
            Start
          </button>
          <button type="button" disabled={!allows(state, 'turn-off')} onClick={() => act('vm.turnOff')}>
            Turn Off
          </button>
          {state === 'Paused' ? (
            <button type="button" onClick={() => act('vm.resume')}>
              Resume
            </button>
          ) : (
            <button type="button" disabled={!allows(state, 'pause')} onClick={() => act('vm.pause')}>
              Pause
            </button>
          )}
          <button type="button" disabled={!allows(state, 'reset')} onClick={() => act('vm.reset')}>
            Reset
          </button>
        </div>
        <ErrorBox error={error} />
        <div className="console-screen">
          {attachable ? (
            <div className="xterm-host" ref={host} data-testid="console-terminal" />
          ) : (
            <div className="console-off">
              <p>
                The virtual machine &apos;{vm?.name ?? vmId}&apos; is{' '}
                {state === 'Failed' ? 'in a failed state' : 'turned off'}.
              </p>
              <p>To start the virtual machine, click Start.</p>
              <button
                type="button"
                className="primary"
                disabled={!allows(state, 'start')}
                onClick={() => act('vm.start')}
              >
                Start
              </button>
            </div>
          )}
        </div>
        <div className="console-status" role="status">
          Status: {state}
          {ended && !attachable ? ` — ${ended}` : ''}
        </div>
      </div>
    </div>
  );
}
