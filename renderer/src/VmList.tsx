// The Virtual Machines list: Name, State, CPU Usage, Assigned Memory, Uptime, Status.
// Sortable by any column, multi-select (click, Ctrl, Shift, Ctrl+A), keyboard navigation
// (arrows, Home/End, PageUp/PageDown, Enter connects, Delete deletes, Shift+F10 or the
// menu key opens the context menu). Rows are virtualized: only the visible ones exist in
// the DOM, so 500 VMs render as fast as 30.
import { memo, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import type { KeyboardEvent, MouseEvent } from 'react';

import type { VmSummary } from '../../app/api/vm';
import { assignedMemory, formatCpu, formatMiB, formatUptime, statusText } from './format';
import { clickRow, contextRow, keyMove, type Selection } from './selection';
import { nextSort, sortVms, type SortKey, type SortSpec } from './sort';

export const ROW_HEIGHT = 22;
const OVERSCAN = 8;

export const COLUMNS: readonly { key: SortKey; label: string; width: string; align?: 'right' }[] = [
  { key: 'name', label: 'Name', width: 'minmax(140px, 2fr)' },
  { key: 'state', label: 'State', width: 'minmax(70px, 1fr)' },
  { key: 'cpu', label: 'CPU Usage', width: 'minmax(70px, 0.8fr)', align: 'right' },
  { key: 'memory', label: 'Assigned Memory', width: 'minmax(100px, 1fr)', align: 'right' },
  { key: 'uptime', label: 'Uptime', width: 'minmax(80px, 1fr)', align: 'right' },
  { key: 'status', label: 'Status', width: 'minmax(100px, 2fr)' },
];
const gridTemplate = COLUMNS.map((c) => c.width).join(' ');

export interface VmListProps {
  vms: readonly VmSummary[];
  selection: Selection;
  onSelection: (sel: Selection) => void;
  sort: SortSpec;
  onSort: (sort: SortSpec) => void;
  onOpen: (vm: VmSummary) => void;
  onDelete: () => void;
  onContextMenu: (at: { x: number; y: number }) => void;
  // Measures (bench:ui): called after each commit of the list.
  onCommit?: () => void;
}

const rowDomId = (id: string): string => `vm-row-${id}`;

const Row = memo(function Row({
  vm,
  index,
  selected,
  focused,
  onMouseDown,
  onContext,
  onDoubleClick,
}: {
  vm: VmSummary;
  index: number;
  selected: boolean;
  focused: boolean;
  onMouseDown: (e: MouseEvent, id: string) => void;
  onContext: (e: MouseEvent, id: string) => void;
  onDoubleClick: (id: string) => void;
}) {
  const live = vm.state === 'Running' || vm.state === 'Paused';
  return (
    <div
      role="row"
      id={rowDomId(vm.id)}
      aria-rowindex={index + 2}
      aria-selected={selected}
      data-vm-id={vm.id}
      data-state={vm.state}
      className={`vm-row${selected ? ' selected' : ''}${focused ? ' focused' : ''}`}
      style={{ transform: `translateY(${index * ROW_HEIGHT}px)`, gridTemplateColumns: gridTemplate }}
      onMouseDown={(e) => onMouseDown(e, vm.id)}
      onContextMenu={(e) => onContext(e, vm.id)}
      onDoubleClick={() => onDoubleClick(vm.id)}
    >
      <div role="gridcell" className="cell name">
        <span className={`vm-icon state-${vm.state.toLowerCase()}`} aria-hidden="true" />
        {vm.name}
      </div>
      <div role="gridcell" className="cell">
        {vm.state}
      </div>
      <div role="gridcell" className="cell num">
        {live ? formatCpu(vm.stats?.cpuUsagePercent ?? 0) : ''}
      </div>
      <div role="gridcell" className="cell num">
        {formatMiB(assignedMemory(vm))}
      </div>
      <div role="gridcell" className="cell num">
        {live ? formatUptime(vm.stats?.uptimeMs) : ''}
      </div>
      <div role="gridcell" className="cell status" title={statusText(vm)}>
        {statusText(vm)}
      </div>
    </div>
  );
});

export function VmList(props: VmListProps) {
  const { vms, selection, onSelection, sort, onSort, onOpen, onDelete, onContextMenu, onCommit } = props;
  const sorted = useMemo(() => sortVms(vms, sort), [vms, sort]);
  const order = useMemo(() => sorted.map((v) => v.id), [sorted]);
  const byId = useMemo(() => new Map(sorted.map((v) => [v.id, v])), [sorted]);
  const scroller = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(400);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    setHeight(el.clientHeight || 400);
    if (typeof ResizeObserver === 'undefined') return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight || 400));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    onCommit?.();
  });

  const pageSize = Math.max(1, Math.floor(height / ROW_HEIGHT) - 1);
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(sorted.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN);

  // Keeps the focused row in view after keyboard moves.
  const reveal = useCallback(
    (id: string | null) => {
      const el = scroller.current;
      if (!el || id === null) return;
      const i = order.indexOf(id);
      if (i < 0) return;
      const top = i * ROW_HEIGHT;
      if (top < el.scrollTop) el.scrollTop = top;
      else if (top + ROW_HEIGHT > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW_HEIGHT - el.clientHeight;
      setScrollTop(el.scrollTop);
    },
    [order],
  );

  const selRef = useRef(selection);
  selRef.current = selection;
  const orderRef = useRef(order);
  orderRef.current = order;

  const onMouseDown = useCallback(
    (e: MouseEvent, id: string) => {
      if (e.button !== 0) return;
      onSelection(clickRow(selRef.current, orderRef.current, id, { ctrl: e.ctrlKey || e.metaKey, shift: e.shiftKey }));
    },
    [onSelection],
  );
  const onContext = useCallback(
    (e: MouseEvent, id: string) => {
      e.preventDefault();
      onSelection(contextRow(selRef.current, id));
      onContextMenu({ x: e.clientX, y: e.clientY });
    },
    [onSelection, onContextMenu],
  );
  const onDoubleClick = useCallback(
    (id: string) => {
      const vm = byId.get(id);
      if (vm) onOpen(vm);
    },
    [byId, onOpen],
  );

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    if (e.key === 'Enter') {
      const vm = selection.focus !== null ? byId.get(selection.focus) : undefined;
      if (vm) onOpen(vm);
      e.preventDefault();
      return;
    }
    if (e.key === 'Delete') {
      onDelete();
      e.preventDefault();
      return;
    }
    if (e.key === 'ContextMenu' || (e.key === 'F10' && e.shiftKey)) {
      e.preventDefault();
      const el = selection.focus !== null ? document.getElementById(rowDomId(selection.focus)) : null;
      const r = el?.getBoundingClientRect() ?? scroller.current?.getBoundingClientRect();
      onContextMenu({ x: (r?.left ?? 0) + 40, y: (r?.top ?? 0) + ROW_HEIGHT });
      return;
    }
    const next = keyMove(selection, order, e.key, { ctrl: e.ctrlKey || e.metaKey, shift: e.shiftKey }, pageSize);
    if (next) {
      e.preventDefault();
      onSelection(next);
      reveal(next.focus);
    }
  };

  const rows = [];
  for (let i = first; i < last; i++) {
    const vm = sorted[i];
    if (!vm) continue;
    rows.push(
      <Row
        key={vm.id}
        vm={vm}
        index={i}
        selected={selection.ids.has(vm.id)}
        focused={selection.focus === vm.id}
        onMouseDown={onMouseDown}
        onContext={onContext}
        onDoubleClick={onDoubleClick}
      />,
    );
  }

  return (
    <div
      className="vm-list"
      role="grid"
      aria-label="Virtual Machines"
      aria-multiselectable="true"
      aria-rowcount={sorted.length + 1}
      aria-colcount={COLUMNS.length}
      tabIndex={0}
      aria-activedescendant={
        selection.focus !== null && byId.has(selection.focus) ? rowDomId(selection.focus) : undefined
      }
      onKeyDown={onKeyDown}
    >
      <div role="row" aria-rowindex={1} className="vm-header" style={{ gridTemplateColumns: gridTemplate }}>
        {COLUMNS.map((c) => (
          <div
            key={c.key}
            role="columnheader"
            aria-sort={sort.key === c.key ? (sort.dir === 'asc' ? 'ascending' : 'descending') : 'none'}
            className={`cell header${c.align === 'right' ? ' num' : ''}`}
          >
            <button type="button" tabIndex={-1} onClick={() => onSort(nextSort(sort, c.key))}>
              {c.label}
              {sort.key === c.key ? <span aria-hidden="true">{sort.dir === 'asc' ? ' ▲' : ' ▼'}</span> : null}
            </button>
          </div>
        ))}
      </div>
      <div
        className="vm-scroller"
        ref={scroller}
        role="presentation"
        onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      >
        <div role="presentation" className="vm-rows" style={{ height: sorted.length * ROW_HEIGHT }}>
          {rows}
        </div>
        {sorted.length === 0 ? <div className="empty-list">No virtual machines were found on this server.</div> : null}
      </div>
    </div>
  );
}
