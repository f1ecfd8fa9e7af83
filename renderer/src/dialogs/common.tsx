// Dialog frames in the Windows manner: a modal window with a title bar, the wizard frame
// (steps on the left, Previous/Next/Finish/Cancel), and the progress panel for long work.
import { useQueryClient } from '@tanstack/react-query';
import { cloneElement, isValidElement, useEffect, useId, useRef, useState, type ReactNode } from 'react';

import type { Operation, OperationStarted } from '../../../app/api/bridge';
import { keys } from '../cache';
import { useApi, useOperation } from '../context';

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ReactNode;
  footer?: ReactNode;
  wide?: boolean;
  className?: string;
}) {
  const titleId = useId();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    const first = el?.querySelector<HTMLElement>(
      'input:not([disabled]), select, textarea, button.primary, [tabindex="0"]',
    );
    (first ?? el)?.focus();
  }, []);
  return (
    <div className="modal-backdrop">
      <div
        ref={ref}
        className={`dialog${props.wide ? ' wide' : ''}${props.className ? ` ${props.className}` : ''}`}
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        tabIndex={-1}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            props.onClose();
          }
        }}
      >
        <div className="dialog-title">
          <h2 id={titleId}>{props.title}</h2>
          <button type="button" className="close" aria-label="Close" onClick={props.onClose}>
            ✕
          </button>
        </div>
        <div className="dialog-body">{props.children}</div>
        {props.footer ? <div className="dialog-footer">{props.footer}</div> : null}
      </div>
    </div>
  );
}

// The footer of a dialog that runs one operation: its action and Cancel, then Close once done.
export function RunFooter(props: {
  done: boolean;
  busy: boolean;
  ready: boolean;
  action: string;
  onRun: () => void;
  onClose: () => void;
}) {
  if (props.done) {
    return (
      <button type="button" className="primary" onClick={props.onClose}>
        Close
      </button>
    );
  }
  return (
    <>
      <button type="button" className="primary" disabled={props.busy || !props.ready} onClick={props.onRun}>
        {props.action}
      </button>
      <button type="button" onClick={props.onClose}>
        Cancel
      </button>
    </>
  );
}

// Below a dialog that runs one operation: its progress, then what it did or why it failed.
export function RunStatus(props: {
  operationId: string | undefined;
  onEnd: (op: Operation) => void;
  done: string | undefined;
  error: string | undefined;
}) {
  return (
    <>
      {props.operationId ? <OperationProgress operationId={props.operationId} onEnd={props.onEnd} /> : null}
      {props.done ? (
        <p className="success" role="status">
          {props.done}
        </p>
      ) : null}
      <ErrorBox error={props.error} />
    </>
  );
}

export function ErrorBox({ error }: { error: string | undefined | null }) {
  if (!error) return null;
  return (
    <div className="error-box" role="alert">
      <span className="error-icon" aria-hidden="true">
        ✖
      </span>
      {error}
    </div>
  );
}

export interface WizardStep {
  id: string;
  label: string;
  content: ReactNode;
  // Problems that keep the user on this step (shown when they try to leave it).
  errors?: string[];
}

export function Wizard(props: {
  title: string;
  steps: WizardStep[];
  onCancel: () => void;
  onFinish: () => void;
  busy?: boolean;
  error?: string | undefined;
  footerExtra?: ReactNode;
  finishLabel?: string;
}) {
  const { steps } = props;
  const [index, setIndex] = useState(0);
  const [shown, setShown] = useState(false);
  const step = steps[index] ?? steps[0];
  const stepErrors = step?.errors ?? [];
  const blocked = (upTo: number) => steps.slice(0, upTo).findIndex((s) => (s.errors ?? []).length > 0);
  const go = (target: number) => {
    if (target > index) {
      const b = blocked(target);
      if (b >= 0) {
        setIndex(b);
        setShown(true);
        return;
      }
    }
    setShown(false);
    setIndex(target);
  };
  const finish = () => {
    const b = blocked(steps.length);
    if (b >= 0) {
      setIndex(b);
      setShown(true);
      return;
    }
    props.onFinish();
  };
  return (
    <Dialog
      title={props.title}
      onClose={props.onCancel}
      wide
      className="wizard"
      footer={
        <>
          {props.footerExtra}
          <button type="button" disabled={index === 0 || props.busy} onClick={() => go(index - 1)}>
            &lt; Previous
          </button>
          <button type="button" disabled={index >= steps.length - 1 || props.busy} onClick={() => go(index + 1)}>
            Next &gt;
          </button>
          <button type="button" className="primary" disabled={props.busy} onClick={finish}>
            {props.finishLabel ?? 'Finish'}
          </button>
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
        </>
      }
    >
      <div className="wizard-body">
        <nav className="wizard-steps" aria-label="Wizard steps">
          <ol>
            {steps.map((s, i) => (
              <li key={s.id}>
                <button
                  type="button"
                  className={i === index ? 'current' : ''}
                  aria-current={i === index ? 'step' : undefined}
                  disabled={props.busy}
                  onClick={() => go(i)}
                >
                  {s.label}
                </button>
              </li>
            ))}
          </ol>
        </nav>
        <div className="wizard-page">
          <h3 className="wizard-heading">{step?.label}</h3>
          {step?.content}
          {shown && stepErrors.length > 0 ? (
            <div className="error-box" role="alert">
              {stepErrors.map((e) => (
                <div key={e}>{e}</div>
              ))}
            </div>
          ) : null}
          <ErrorBox error={props.error} />
        </div>
      </div>
    </Dialog>
  );
}

// Labelled form rows.
export function Row(props: { label: string; children: ReactNode; hint?: string }) {
  const id = useId();
  return (
    <div className="form-row">
      <label htmlFor={id}>{props.label}</label>
      <div className="form-control">
        {withId(props.children, id)}
        {props.hint ? <div className="hint">{props.hint}</div> : null}
      </div>
    </div>
  );
}

function withId(children: ReactNode, id: string): ReactNode {
  return isValidElement<{ id?: string }>(children) ? cloneElement(children, { id }) : children;
}

// A long operation under way: its title, a progress bar and Cancel. Resolves through
// onEnd when the service reports the end (done, failed or cancelled).
export function OperationProgress({ operationId, onEnd }: { operationId: string; onEnd: (op: Operation) => void }) {
  const api = useApi();
  const op = useOperation(operationId);
  const [cancelError, setCancelError] = useState<string>();
  const ended = useRef(false);
  useEffect(() => {
    if (op && op.state !== 'running' && !ended.current) {
      ended.current = true;
      onEnd(op);
    }
  }, [op, onEnd]);
  const fraction = op?.state === 'done' ? 1 : op && op.total > 0 ? Math.min(1, op.done / op.total) : null;
  return (
    <div className="progress-panel">
      <div className="progress-title">{op?.title ?? 'Starting...'}</div>
      <div
        className="progress-bar"
        role="progressbar"
        aria-label={op?.title ?? 'Progress'}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={fraction === null ? undefined : Math.round(fraction * 100)}
      >
        <div
          className={`progress-fill${fraction === null ? ' indeterminate' : ''}`}
          style={{ width: `${(fraction ?? 0.3) * 100}%` }}
        />
      </div>
      <div className="progress-row">
        <span>{fraction === null ? '' : `${Math.round(fraction * 100)} %`}</span>
        <button
          type="button"
          disabled={!op?.cancellable || op.state !== 'running'}
          onClick={() => {
            api.invoke('operation.cancel', { operationId }).catch((e: unknown) => setCancelError(errorText(e)));
          }}
        >
          Cancel
        </button>
      </div>
      <ErrorBox error={cancelError} />
    </div>
  );
}

// Runs a long operation: start() takes the invoke promise; `operationId` drives the
// progress panel; the returned promise resolves with the finished operation, or rejects
// with its error when it failed or was cancelled.
export function useLongOperation() {
  const client = useQueryClient();
  const [operationId, setOperationId] = useState<string>();
  const waiter = useRef<{ resolve: (op: Operation) => void } | null>(null);
  const start = async (started: Promise<OperationStarted>): Promise<Operation> => {
    const { operationId: id } = await started;
    setOperationId(id);
    const known = client.getQueryData<Operation[]>(keys.operations)?.find((o) => o.id === id);
    const op =
      known && known.state !== 'running'
        ? known
        : await new Promise<Operation>((resolve) => {
            waiter.current = { resolve };
          });
    const failed = operationError(op);
    if (failed) throw new Error(failed);
    return op;
  };
  const onEnd = (op: Operation) => {
    waiter.current?.resolve(op);
    waiter.current = null;
  };
  const reset = () => setOperationId(undefined);
  return { operationId, start, onEnd, reset };
}

function operationError(op: Operation): string | undefined {
  if (op.state === 'done') return undefined;
  if (op.state === 'cancelled') return `${op.title}: cancelled`;
  return op.error?.message ?? `${op.title} failed`;
}
