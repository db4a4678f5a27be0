/* Job page: the label distribution chart (Chart.js), updated in place (not rebuilt) each time
   htmx swaps in a fresh status panel while the job runs. Loaded as a static file with the
   page's CSP nonce: no inline script, no eval. */
(function () {
  "use strict";

  const canvas = document.getElementById("label-chart");
  if (!canvas || typeof Chart === "undefined") return;

  const colours = ["#3d5afe", "#2e7d4f", "#c77700", "#8e24aa", "#00838f", "#6d4c41", "#d81b60", "#546e7a"];
  let chart = null;

  // The labels and first counts come from the page's json_script; the status panel, which
  // htmx swaps while the job runs, carries fresh counts in data-label-counts.
  function readData() {
    const node = document.getElementById("label-chart-data");
    if (!node) return null;
    let data;
    try {
      data = JSON.parse(node.textContent);
    } catch (error) {
      return null;
    }
    const panel = document.getElementById("job-status");
    if (panel && panel.dataset.labelCounts) {
      try {
        data.counts = JSON.parse(panel.dataset.labelCounts);
      } catch (error) {
        /* keep the page's counts */
      }
    }
    return data;
  }

  function render() {
    const data = readData();
    if (!data) return;
    if (chart) {
      chart.data.labels = data.labels;
      chart.data.datasets[0].data = data.counts;
      chart.update();
      return;
    }
    chart = new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [{
          label: "Documents",
          data: data.counts,
          backgroundColor: data.labels.map(function (_label, i) { return colours[i % colours.length]; }),
          borderRadius: 4,
          maxBarThickness: 28,
        }],
      },
      options: {
        indexAxis: "y",
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 400 },
        plugins: { legend: { display: false } },
        scales: {
          x: { beginAtZero: true, ticks: { precision: 0 } },
          y: { ticks: { autoSkip: false } },
        },
      },
    });
    canvas.dataset.ready = "true";
  }

  render();
  // After each swap of the status panel (outerHTML: the old node is gone, so look the data up
  // again rather than trusting the event's target).
  document.body.addEventListener("htmx:afterSettle", render);
})();
