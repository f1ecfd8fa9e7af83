// Multi-selection in the VM list, as in any Windows list view: click selects one,
// Ctrl+click toggles, Shift+click selects a range from the anchor; arrows, Home/End and
// PageUp/PageDown move the focus (with Shift extending the range), Ctrl+A selects all.
export interface Selection {
  ids: ReadonlySet<string>;
  // The row the keyboard is on, and where Shift ranges start.
  focus: string | null;
  anchor: string | null;
}

export const emptySelection: Selection = { ids: new Set(), focus: null, anchor: null };

function range(order: readonly string[], a: string, b: string): Set<string> {
  const i = order.indexOf(a);
  const j = order.indexOf(b);
  if (i < 0 || j < 0) return new Set([b]);
  const [lo, hi] = i <= j ? [i, j] : [j, i];
  return new Set(order.slice(lo, hi + 1));
}

export function clickRow(
  sel: Selection,
  order: readonly string[],
  id: string,
  mods: { ctrl: boolean; shift: boolean },
): Selection {
  if (mods.shift && sel.anchor !== null) {
    const ids = range(order, sel.anchor, id);
    if (mods.ctrl) for (const x of sel.ids) ids.add(x);
    return { ids, focus: id, anchor: sel.anchor };
  }
  if (mods.ctrl) {
    const ids = new Set(sel.ids);
    if (ids.has(id)) ids.delete(id);
    else ids.add(id);
    return { ids, focus: id, anchor: id };
  }
  return { ids: new Set([id]), focus: id, anchor: id };
}

// Right-click: keep a selection that contains the row (the menu acts on all of it),
// otherwise select just that row.
export function contextRow(sel: Selection, id: string): Selection {
  return sel.ids.has(id) ? { ...sel, focus: id } : { ids: new Set([id]), focus: id, anchor: id };
}

export function keyMove(
  sel: Selection,
  order: readonly string[],
  key: string,
  mods: { ctrl: boolean; shift: boolean },
  pageSize: number,
): Selection | null {
  if (order.length === 0) return null;
  if (mods.ctrl && (key === 'a' || key === 'A')) {
    return { ids: new Set(order), focus: sel.focus ?? order[0] ?? null, anchor: sel.anchor };
  }
  const current = sel.focus !== null ? order.indexOf(sel.focus) : -1;
  let next: number;
  switch (key) {
    case 'ArrowDown':
      next = current < 0 ? 0 : Math.min(order.length - 1, current + 1);
      break;
    case 'ArrowUp':
      next = current < 0 ? 0 : Math.max(0, current - 1);
      break;
    case 'Home':
      next = 0;
      break;
    case 'End':
      next = order.length - 1;
      break;
    case 'PageDown':
      next = Math.min(order.length - 1, Math.max(0, current) + pageSize);
      break;
    case 'PageUp':
      next = Math.max(0, current - pageSize);
      break;
    case ' ':
      if (sel.focus === null) return null;
      return clickRow(sel, order, sel.focus, { ctrl: true, shift: false });
    default:
      return null;
  }
  const id = order[next];
  if (id === undefined) return null;
  if (mods.shift) {
    const anchor = sel.anchor ?? id;
    return { ids: range(order, anchor, id), focus: id, anchor };
  }
  if (mods.ctrl) return { ...sel, focus: id };
  return { ids: new Set([id]), focus: id, anchor: id };
}

// Drops ids that left the list (a VM was deleted elsewhere).
export function pruneSelection(sel: Selection, present: ReadonlySet<string>): Selection {
  let changed = false;
  const ids = new Set<string>();
  for (const id of sel.ids) {
    if (present.has(id)) ids.add(id);
    else changed = true;
  }
  const focus = sel.focus !== null && present.has(sel.focus) ? sel.focus : null;
  const anchor = sel.anchor !== null && present.has(sel.anchor) ? sel.anchor : null;
  if (!changed && focus === sel.focus && anchor === sel.anchor) return sel;
  return { ids, focus, anchor };
}
