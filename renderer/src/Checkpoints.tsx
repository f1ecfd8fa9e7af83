// The Checkpoints pane: the selected VM's checkpoint tree, with 'Now' under the checkpoint
// the running state derives from. A tree (role=tree) with arrow-key navigation.
import type { KeyboardEvent, MouseEvent } from 'react';
import { useMemo } from 'react';

import type { CheckpointList } from '../../app/api/bridge';
import { buildCheckpointTree, type CheckpointNode } from './context';
import { formatBytes } from './format';

export const NOW = '__now__';

interface Flat {
  id: string;
  label: string;
  depth: number;
  now: boolean;
  // What the tooltip says: "Production checkpoint" or "Standard checkpoint".
  title: string;
  // Shown beside a checkpoint that holds the VM's memory: its state file's size.
  memory?: string;
}

function flatten(nodes: CheckpointNode[], depth: number, out: Flat[]): void {
  for (const n of nodes) {
    const c = n.checkpoint;
    const memory = c.holdsMemory ? formatBytes(c.stateBytes ?? 0) : undefined;
    const title =
      `${c.type === 'production' ? 'Production' : 'Standard'} checkpoint, ${c.createdAt}` +
      (memory !== undefined ? `, with the virtual machine's memory (${memory})` : '');
    out.push({ id: c.id, label: c.name, depth, now: false, title, ...(memory !== undefined ? { memory } : {}) });
    flatten(n.children, depth + 1, out);
    if (n.current) out.push({ id: NOW, label: 'Now', depth: depth + 1, now: true, title: 'Now' });
  }
}

export function flattenCheckpoints(tree: CheckpointList): Flat[] {
  const out: Flat[] = [];
  flatten(buildCheckpointTree(tree), 0, out);
  if (tree.now === null) out.push({ id: NOW, label: 'Now', depth: 0, now: true, title: 'Now' });
  return out;
}

export function CheckpointsPane(props: {
  tree: CheckpointList | undefined;
  error: string | undefined;
  loading: boolean;
  selected: string | null;
  onSelect: (id: string | null) => void;
  onApply: (id: string) => void;
  onContextMenu: (at: { x: number; y: number }) => void;
}) {
  const { tree, onSelect } = props;
  const flat = useMemo(() => (tree ? flattenCheckpoints(tree) : []), [tree]);
  // A checkpoint deleted while selected is no longer shown as selected.
  const selected = flat.some((f) => f.id === props.selected) ? props.selected : null;
  const onKeyDown = (e: KeyboardEvent) => {
    const i = flat.findIndex((f) => f.id === selected);
    let next = i;
    if (e.key === 'ArrowDown') next = Math.min(flat.length - 1, i + 1);
    else if (e.key === 'ArrowUp') next = Math.max(0, i - 1);
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = flat.length - 1;
    else if (e.key === 'Enter' && selected && selected !== NOW) {
      props.onApply(selected);
      return;
    } else return;
    e.preventDefault();
    const f = flat[next];
    if (f) onSelect(f.id);
  };
  const onContext = (e: MouseEvent, id: string) => {
    e.preventDefault();
    onSelect(id);
    if (id !== NOW) props.onContextMenu({ x: e.clientX, y: e.clientY });
  };
  if (props.error) return <div className="pane-message">{props.error}</div>;
  if (props.loading && !tree) return <div className="pane-message">Loading...</div>;
  if (!tree) return <div className="pane-message">Select a virtual machine to see its checkpoints.</div>;
  return (
    <ul
      className="checkpoint-tree"
      role="tree"
      aria-label="Checkpoints"
      tabIndex={0}
      aria-activedescendant={selected ? `cp-${selected}` : undefined}
      onKeyDown={onKeyDown}
    >
      {flat.map((f) => (
        <li
          key={f.id}
          id={`cp-${f.id}`}
          role="treeitem"
          aria-level={f.depth + 1}
          aria-selected={selected === f.id}
          className={`cp-item${selected === f.id ? ' selected' : ''}${f.now ? ' now' : ''}`}
          style={{ paddingLeft: 6 + f.depth * 16 }}
          title={f.title}
          onMouseDown={() => onSelect(f.id)}
          onDoubleClick={() => f.id !== NOW && props.onApply(f.id)}
          onContextMenu={(e) => onContext(e, f.id)}
        >
          <span className={f.now ? 'now-icon' : 'cp-icon'} aria-hidden="true" />
          {f.label}
          {f.memory !== undefined ? (
            <span className="cp-memory" aria-label={`holds memory, ${f.memory}`}>
              {` (memory, ${f.memory})`}
            </span>
          ) : null}
        </li>
      ))}
    </ul>
  );
}
