// tokenmeter dashboard: draws the charts from the page's #chart-data, submits filter menus on
// change, and shows the custom dates only for the custom period. Pages work without it.
(function () {
  "use strict";
  var palette = ["#3b5bdb", "#f08c00", "#2b8a3e", "#c2255c", "#1098ad", "#7048e8", "#e8590c", "#5c940d", "#868e96"];
  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 2 });

  function dataOf() {
    var node = document.getElementById("chart-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  function shortDay(day) { return day.slice(5); }  // 2026-11-27 -> 11-27; the axis says UTC

  function dollars(v) {  // cents for amounts of a dollar or more, two significant digits below
    if (v === 0 || Math.abs(v) >= 1) { return usd.format(v); }
    return "$" + Number(v.toPrecision(2)).toString();
  }

  function money(axisTitle) {
    return { beginAtZero: true, title: { display: true, text: axisTitle }, ticks: { callback: dollars } };
  }

  var builders = {
    stacked: function (d) {
      return {
        type: "bar",
        data: { labels: d.labels.map(shortDay), datasets: d.series.map(function (s, i) { return { label: s.label, data: s.data, backgroundColor: palette[i % palette.length], stack: "spend" }; }) },
        options: { scales: { x: { stacked: true, title: { display: true, text: "day (UTC, month-day)" } }, y: Object.assign(money("USD per day"), { stacked: true }) },
          plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + dollars(c.parsed.y); } } } } }
      };
    },
    mix: function (d) {
      return {
        type: "line",
        data: { labels: d.labels.map(shortDay), datasets: [
          { label: "input:output ratio", data: d.ratio, borderColor: palette[0], backgroundColor: palette[0], yAxisID: "ratio", spanGaps: true },
          { label: "cache hit rate (%)", data: d.hit_rate, borderColor: palette[1], backgroundColor: palette[1], yAxisID: "hit", spanGaps: true }
        ] },
        options: { scales: {
          x: { title: { display: true, text: "day (UTC, month-day)" } },
          ratio: { position: "left", beginAtZero: true, title: { display: true, text: "input tokens per output token" } },
          hit: { position: "right", min: 0, max: 100, title: { display: true, text: "cache hit rate (%)" }, grid: { drawOnChartArea: false } }
        } }
      };
    },
    timeline: function (d) {
      return {
        type: "bar",
        data: { labels: d.labels.map(function (h) { return h.replace("T", " "); }), datasets: [
          { label: "cost (USD)", data: d.cost, backgroundColor: palette[0], yAxisID: "cost" },
          { label: "requests", data: d.requests, type: "line", borderColor: palette[1], backgroundColor: palette[1], yAxisID: "requests" }
        ] },
        options: { scales: {
          x: { title: { display: true, text: "hour (UTC)" } },
          cost: Object.assign(money("USD per hour"), { position: "left" }),
          requests: { position: "right", beginAtZero: true, title: { display: true, text: "requests per hour" }, grid: { drawOnChartArea: false } }
        } }
      };
    },
    lorenz: function (d) {
      return {
        type: "scatter",
        data: { datasets: [
          { label: "spend", data: d.points, showLine: true, borderColor: palette[0], backgroundColor: palette[0] },
          { label: "perfect equality", data: [{ x: 0, y: 0 }, { x: 100, y: 100 }], showLine: true, borderDash: [6, 4], borderColor: "#adb5bd", pointRadius: 0 }
        ] },
        options: { scales: {
          x: { min: 0, max: 100, title: { display: true, text: "% of people (least spend first)" } },
          y: { min: 0, max: 100, title: { display: true, text: "% of spend" } }
        } }
      };
    }
  };

  function draw() {
    if (typeof Chart === "undefined") { return; }
    var data = dataOf();
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = data[canvas.dataset.source];
      if (!source) { return; }
      var config = builders[canvas.dataset.chart](source);
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options);
      new Chart(canvas, config);
    });
  }

  function filters() {
    document.querySelectorAll("form.filters").forEach(function (form) {
      var period = form.querySelector("select[name=period]");
      function toggle() {
        var custom = period.value === "custom";
        form.querySelectorAll(".custom").forEach(function (el) { el.hidden = !custom; el.querySelector("input").disabled = !custom; });
      }
      period.addEventListener("change", toggle);
      toggle();
      form.querySelectorAll("select[data-submit]").forEach(function (select) {
        select.addEventListener("change", function () { if (select !== period || period.value !== "custom") { form.submit(); } });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { filters(); draw(); });
})();
