import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/**
 * A list that renders only the rows in view (fixed row height), so 100,000 timeline rows scroll as
 * smoothly as 100. With one height for every row, which rows are visible is a division: no
 * measuring library is needed.
 */
export function VirtualRows<T>(props: {
  rows: readonly T[];
  rowHeight: number;
  height: number;
  render: (row: T, index: number) => ComponentChildren;
  /** Called when the view comes within a screen of the last loaded row. */
  onNearEnd?: () => void;
  resetKey: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  useEffect(() => {
    if (box.current) box.current.scrollTop = 0;
    setTop(0);
  }, [props.resetKey]);
  const { rows, rowHeight, height } = props;
  const perScreen = Math.ceil(height / rowHeight);
  const first = Math.max(0, Math.floor(top / rowHeight) - 10);
  const last = Math.min(rows.length, first + perScreen + 20);
  useEffect(() => {
    if (last >= rows.length - perScreen) props.onNearEnd?.();
  }, [last, rows.length]);
  const items: ComponentChildren[] = [];
  for (let i = first; i < last; i++) {
    items.push(
      <div key={i} class="vrow" style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }}>
        {props.render(rows[i], i)}
      </div>,
    );
  }
  return (
    <div
      ref={box}
      class="vlist"
      style={{ height: `${height}px` }}
      onScroll={(e) => setTop((e.currentTarget as HTMLDivElement).scrollTop)}
    >
      <div class="vspace" style={{ height: `${rows.length * rowHeight}px` }}>
        {items}
      </div>
    </div>
  );
}
