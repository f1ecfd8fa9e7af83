// The Actions pane (right) and the context menus: the same action lists, each entry enabled
// only when the selection's state allows it. Errors show under the section that ran them.
import { useEffect, useRef, type ReactNode } from 'react';

import { ErrorBox } from './dialogs/common';

export interface MenuItem {
  id: string;
  label: string;
  enabled: boolean;
  children?: MenuItem[];
}

export function ActionSection(props: {
  title: string;
  items: MenuItem[];
  onAction: (id: string) => void;
  error?: string | undefined;
  onDismissError?: () => void;
  icon?: ReactNode;
}) {
  return (
    <section className="action-section" aria-label={`Actions for ${props.title}`}>
      <h2 className="action-title">{props.title}</h2>
      <ul className="action-list">
        {props.items.map((item) =>
          item.children ? (
            <li key={item.id} className="action-group">
              <span className="action-group-label">{item.label}</span>
              <ul>
                {item.children.map((c) => (
                  <li key={c.id}>
                    <button
                      type="button"
                      className="action"
                      data-action={c.id}
                      disabled={!c.enabled}
                      onClick={() => props.onAction(c.id)}
                    >
                      {c.label}
                    </button>
                  </li>
                ))}
              </ul>
            </li>
          ) : (
            <li key={item.id}>
              <button
                type="button"
                className="action"
                data-action={item.id}
                disabled={!item.enabled}
                onClick={() => props.onAction(item.id)}
              >
                <span className={`action-icon icon-${item.id}`} aria-hidden="true" />
                {item.label}
              </button>
            </li>
          ),
        )}
      </ul>
      {props.error ? (
        <div className="action-error">
          <ErrorBox error={props.error} />
          {props.onDismissError ? (
            <button type="button" className="link" onClick={props.onDismissError}>
              Dismiss
            </button>
          ) : null}
        </div>
      ) : null}
    </section>
  );
}

export function ContextMenu(props: {
  at: { x: number; y: number };
  items: MenuItem[];
  label: string;
  onAction: (id: string) => void;
  onClose: () => void;
}) {
  const ref = useRef<HTMLUListElement>(null);
  useEffect(() => {
    ref.current?.querySelector<HTMLElement>('[role="menuitem"]:not([aria-disabled="true"])')?.focus();
    const close = (e: Event) => {
      if (ref.current && e.target instanceof Node && ref.current.contains(e.target)) return;
      props.onClose();
    };
    window.addEventListener('mousedown', close);
    window.addEventListener('blur', props.onClose);
    return () => {
      window.removeEventListener('mousedown', close);
      window.removeEventListener('blur', props.onClose);
    };
  }, [props]);
  const move = (dir: 1 | -1) => {
    const items = [
      ...(ref.current?.querySelectorAll<HTMLElement>('[role="menuitem"]:not([aria-disabled="true"])') ?? []),
    ];
    const i = items.indexOf(document.activeElement as HTMLElement);
    items[(i + dir + items.length) % items.length]?.focus();
  };
  const left = Math.min(props.at.x, window.innerWidth - 220);
  const top = Math.min(props.at.y, window.innerHeight - props.items.length * 24 - 10);
  return (
    <ul
      ref={ref}
      className="context-menu"
      role="menu"
      aria-label={props.label}
      style={{ left, top }}
      onKeyDown={(e) => {
        if (e.key === 'Escape') props.onClose();
        else if (e.key === 'ArrowDown') move(1);
        else if (e.key === 'ArrowUp') move(-1);
        else return;
        e.preventDefault();
      }}
    >
      {props.items.map((item) => (
        <li
          key={item.id}
          role="menuitem"
          tabIndex={-1}
          aria-disabled={!item.enabled}
          data-action={item.id}
          className={item.enabled ? '' : 'disabled'}
          onClick={() => {
            if (!item.enabled) return;
            props.onClose();
            props.onAction(item.id);
          }}
          onKeyDown={(e) => {
            if ((e.key === 'Enter' || e.key === ' ') && item.enabled) {
              e.preventDefault();
              props.onClose();
              props.onAction(item.id);
            }
          }}
        >
          {item.label}
        </li>
      ))}
    </ul>
  );
}
