import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import type { ActivitySeries } from './api.js';

/**
 * Records per bucket over the host's record, as bars (uPlot); gaps in the record as red bands
 * that are never bridged; the window the timeline shows as a shaded range. Dragging across the
 * chart picks a new window (the time-range brush).
 */
export function ActivityChart(props: {
  series: ActivitySeries;
  window: { from: number; to: number } | null;
  onSelect: (from: number, to: number) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const onSelect = useRef(props.onSelect);
  onSelect.current = props.onSelect;
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const { series, window } = props;
    const xs = series.counts.map((_, i) => (series.from + (i + 0.5) * series.step) / 1e6);
    const css = getComputedStyle(document.documentElement);
    const accent = css.getPropertyValue('--accent').trim() || '#2f6fdb';
    const danger = css.getPropertyValue('--danger').trim() || '#c62828';
    const opts: uPlot.Options = {
      width: Math.max(300, el.clientWidth),
      height: 130,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      legend: { show: false },
      scales: { x: { time: true, range: [series.from / 1e6, series.to / 1e6] } },
      series: [
        {},
        {
          label: 'records',
          stroke: accent,
          fill: `${accent}66`,
          paths: uPlot.paths.bars?.({ size: [0.92, 40] }),
          points: { show: false },
        },
      ],
      axes: [
        { stroke: css.getPropertyValue('--muted').trim() },
        { size: 56, stroke: css.getPropertyValue('--muted').trim() },
      ],
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 3) return;
            const a = u.posToVal(u.select.left, 'x');
            const b = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onSelect.current(Math.round(a * 1e6), Math.round(b * 1e6));
          },
        ],
        draw: [
          (u) => {
            const ctx = u.ctx;
            const { top, height } = u.bbox;
            ctx.save();
            if (window) {
              const l = u.valToPos(window.from / 1e6, 'x', true);
              const r = u.valToPos(window.to / 1e6, 'x', true);
              ctx.fillStyle = `${accent}22`;
              ctx.fillRect(l, top, Math.max(2, r - l), height);
            }
            ctx.fillStyle = `${danger}88`;
            for (const g of series.gaps) {
              const l = u.valToPos(g.from / 1e6, 'x', true);
              const r = u.valToPos(g.to / 1e6, 'x', true);
              ctx.fillRect(l, top, Math.max(3, r - l), height);
            }
            ctx.restore();
          },
        ],
      },
    };
    const plot = new uPlot(opts, [xs, [...series.counts]], el);
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(300, el.clientWidth), height: 130 }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.series, props.window?.from, props.window?.to]);
  return (
    <div
      ref={box}
      class="activity"
      data-testid="activity"
      title="records over time; drag to choose a window"
    />
  );
}
