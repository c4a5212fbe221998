// Lays the dashboard's panels out on Grafana's grid (24 columns, rows of
// 30 px) and draws each panel's series with uPlot. window.PREVIEW is set by
// presence-dashshot: {panels: [{type, title, unit, gridPos, x, series:
// [{name, values}], error}]}, x in seconds, a value null where there was
// no sample.
(function () {
  const COLUMNS = 24, ROW = 30, GAP = 8;
  const COLORS = ['#73bf69', '#f2cc0c', '#8ab8ff', '#ff780a', '#f2495c', '#5794f2', '#b877d9', '#37872d', '#fade2a', '#ff9830'];
  const grid = document.getElementById('grid');
  const columnWidth = (grid.clientWidth + GAP) / COLUMNS;
  let bottom = 0;

  // Numbers as Grafana's units print them.
  function short(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + ' Bil';
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + ' Mil';
    if (a >= 1e3) return +(v / 1e3).toPrecision(3) + ' K';
    return +v.toPrecision(3) + '';
  }
  function format(unit, v) {
    if (v == null || !isFinite(v)) return '';
    switch (unit) {
      case 's':
        if (v === 0) return '0 s';
        if (Math.abs(v) < 1e-3) return +(v * 1e6).toPrecision(3) + ' µs';
        if (Math.abs(v) < 1) return +(v * 1e3).toPrecision(3) + ' ms';
        return +v.toPrecision(3) + ' s';
      case 'bytes': {
        const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
        let i = 0;
        while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
        return +v.toPrecision(3) + ' ' + units[i];
      }
      case 'percentunit': return +(v * 100).toPrecision(3) + '%';
      case 'ops': return short(v) + ' ops/s';
      case 'reqps': return short(v) + ' req/s';
      default: return short(v);
    }
  }

  function place(el, p) {
    const g = p.gridPos;
    el.style.left = g.x * columnWidth + 'px';
    el.style.top = g.y * (ROW + GAP) + 'px';
    el.style.width = g.w * columnWidth - GAP + 'px';
    el.style.height = g.h * (ROW + GAP) - GAP + 'px';
    bottom = Math.max(bottom, (g.y + g.h) * (ROW + GAP));
    grid.appendChild(el);
  }

  for (const p of window.PREVIEW.panels) {
    const el = document.createElement('div');
    if (p.type === 'row') {
      el.className = 'row';
      el.textContent = p.title;
      place(el, p);
      continue;
    }
    el.className = 'panel';
    const title = document.createElement('h2');
    title.textContent = p.title;
    el.appendChild(title);
    place(el, p);
    const series = (p.series || []).filter(s => s.values.some(v => v != null));
    if (p.error || series.length === 0) {
      const empty = document.createElement('div');
      empty.className = 'empty';
      empty.textContent = 'No data';
      if (p.error) {
        empty.className += ' error';
        empty.textContent = p.error;
      }
      el.appendChild(empty);
      continue;
    }
    const plot = document.createElement('div');
    plot.className = 'plot';
    el.appendChild(plot);
    const legend = document.createElement('div');
    legend.className = 'legend';
    series.forEach((s, i) => {
      const item = document.createElement('span');
      item.style.setProperty('--c', COLORS[i % COLORS.length]);
      item.textContent = s.name;
      legend.appendChild(item);
    });
    el.appendChild(legend);
    const axis = {
      stroke: '#8e8e9e',
      grid: { stroke: 'rgba(204, 204, 220, 0.07)', width: 1 },
      ticks: { show: false },
      font: '11px DejaVu Sans, sans-serif',
    };
    new uPlot({
      width: plot.clientWidth,
      height: plot.clientHeight,
      legend: { show: false },
      cursor: { show: false },
      scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        // Times in UTC, as the header's range; seconds when ticks are
        // closer than a minute.
        Object.assign({}, axis, {
          space: 70, size: 30,
          values: (u, vals) => vals.map(t => new Date(t * 1000).toISOString().slice(11, vals[1] - vals[0] < 60 ? 19 : 16)),
        }),
        Object.assign({}, axis, { size: 64, values: (u, vals) => vals.map(v => format(p.unit, v)) }),
      ],
      series: [{}].concat(series.map((s, i) => ({
        label: s.name,
        stroke: COLORS[i % COLORS.length],
        fill: COLORS[i % COLORS.length] + '1a',
        width: 1.5,
        points: { show: false },
        spanGaps: false,
      }))),
    }, [p.x].concat(series.map(s => s.values)), plot);
  }
  grid.style.height = bottom + 'px';
})();
