// Live charts of the devices' temperatures: one SVG per device, drawn here without a library.
// The page seeds each chart with the readings the server kept; its WebSocket adds new ones.
"use strict";

const deviceCharts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 320, HEIGHT = 100, LEFT = 40, RIGHT = 6, TOP = 8, BOTTOM = 8;
  const charts = new Map();
  let container, kept;

  function svg(tag, attributes, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function build(device) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.id = "chart-" + device;
    const caption = document.createElement("figcaption");
    const name = document.createElement("span");
    const latest = document.createElement("span");
    name.textContent = device;
    latest.className = "latest";
    caption.append(name, latest);
    const root = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `temperature of ${device}`,
    });
    for (const y of [TOP, HEIGHT - BOTTOM]) {
      svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y, class: "grid" }, root);
    }
    const high = svg("text", { x: LEFT - 6, y: TOP + 4, class: "axis" }, root);
    const low = svg("text", { x: LEFT - 6, y: HEIGHT - BOTTOM + 4, class: "axis" }, root);
    const line = svg("polyline", { class: "line", points: "" }, root);
    const dots = svg("g", { class: "points" }, root);
    figure.append(caption, root);
    container.appendChild(figure);
    return { points: [], line, dots, high, low, latest };
  }

  function scale(values) {
    let low = Math.min(...values), high = Math.max(...values);
    if (high - low < 1) {  // a flat line sits mid-chart, not on an edge
      const middle = (high + low) / 2;
      [low, high] = [middle - 0.5, middle + 0.5];
    }
    const step = (WIDTH - LEFT - RIGHT) / Math.max(kept - 1, 1);
    return {
      low, high,
      x: (i) => (WIDTH - RIGHT - (values.length - 1 - i) * step).toFixed(1),  // newest on the right
      y: (v) => (TOP + ((high - v) / (high - low)) * (HEIGHT - TOP - BOTTOM)).toFixed(1),
    };
  }

  function draw(chart) {
    const values = chart.points.map((point) => point.value);
    const { low, high, x, y } = scale(values);
    chart.line.setAttribute("points", values.map((v, i) => `${x(i)},${y(v)}`).join(" "));
    chart.dots.replaceChildren(...chart.points.map((point, i) => {
      const dot = svg("circle", { cx: x(i), cy: y(point.value), r: 2.5 });
      svg("title", {}, dot).textContent = point.label;
      return dot;
    }));
    chart.high.textContent = high.toFixed(1);
    chart.low.textContent = low.toFixed(1);
    chart.latest.textContent = values[values.length - 1].toFixed(2) + " °C";
  }

  function label(reading) {
    const value = reading.temperature.toFixed(2) + " °C";
    if (typeof reading.at !== "number") return value;
    return value + " at " + new Date(reading.at * 1000).toLocaleTimeString();
  }

  return {
    /** Draw into `element`, `element.dataset.kept` readings per device at most. */
    start(element, seed) {
      container = element;
      kept = Number(element.dataset.kept) || 30;
      for (const [device, readings] of Object.entries(seed)) {
        for (const reading of readings) this.add(device, reading);
      }
    },
    /** Add a device's reading to its chart (made on its first reading with a temperature). */
    add(device, reading) {
      if (!Number.isFinite(reading.temperature)) return;
      let chart = charts.get(device);
      if (!chart) charts.set(device, chart = build(device));
      chart.points.push({ value: reading.temperature, label: label(reading) });
      if (chart.points.length > kept) chart.points.shift();
      draw(chart);
    },
  };
})();
