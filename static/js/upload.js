/* Document set page: drag-and-drop or pick many files, sent in batches over XHR with a progress
   bar. Each batch's answer (an HTML summary rendered by the server) is shown above the list, and
   the list (htmx) refreshes itself, then polls while documents are pending.
   Loaded as a static file with the page's CSP nonce: no inline script, no eval. */
(function () {
  "use strict";

  const form = document.querySelector("form[data-upload]");
  if (!form) return;

  const zone = form.querySelector("[data-dropzone]");
  const input = form.querySelector('input[type="file"]');
  const csvRows = form.querySelector('input[name="csv_rows"]');
  const progressBox = form.querySelector("[data-progress]");
  const bar = progressBox.querySelector("progress");
  const label = progressBox.querySelector("[data-progress-label]");
  const results = document.getElementById("upload-results");
  const token = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  const filesPerRequest = parseInt(form.dataset.filesPerRequest, 10) || 20;
  const bytesPerRequest = parseInt(form.dataset.bytesPerRequest, 10) || 64 * 1024 * 1024;
  const maxShownResults = 6;

  const queue = [];
  let busy = false;

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function batches(files) {
    const out = [];
    let current = [];
    let size = 0;
    for (const file of files) {
      if (current.length && (current.length >= filesPerRequest || size + file.size > bytesPerRequest)) {
        out.push(current);
        current = [];
        size = 0;
      }
      current.push(file);
      size += file.size;
    }
    if (current.length) out.push(current);
    return out;
  }

  function send(batch, onProgress) {
    return new Promise(function (resolve, reject) {
      const data = new FormData();
      batch.forEach(function (file) { data.append("files", file, file.name); });
      if (csvRows && csvRows.checked) data.append("csv_rows", "on");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRFToken", token);
      xhr.setRequestHeader("HX-Request", "true");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.responseText);
        else if (xhr.status === 413) reject(new Error("the files were too large for the server"));
        else reject(new Error("the server answered " + xhr.status));
      });
      xhr.addEventListener("error", function () { reject(new Error("the connection failed")); });
      xhr.addEventListener("abort", function () { reject(new Error("the upload was cancelled")); });
      xhr.send(data);
    });
  }

  function showResult(html) {
    results.insertAdjacentHTML("afterbegin", html);
    while (results.children.length > maxShownResults) results.lastElementChild.remove();
  }

  function showError(batch, error) {
    const box = document.createElement("div");
    box.className = "upload-result has-failures";
    box.setAttribute("role", "alert");
    const line = document.createElement("p");
    line.className = "upload-error";
    line.textContent = "Upload of " + plural(batch.length, "file") + " failed: " + error.message + ". ";
    const names = document.createElement("small");
    names.textContent = batch.map(function (file) { return file.name; }).join(", ");
    line.appendChild(names);
    box.appendChild(line);
    results.prepend(box);
  }

  async function drain() {
    if (busy) return;
    busy = true;
    progressBox.hidden = false;
    bar.hidden = false;
    while (queue.length) {
      const files = queue.splice(0, queue.length);
      const total = files.reduce(function (sum, file) { return sum + file.size; }, 0) || 1;
      let done = 0;
      let sent = 0;
      for (const batch of batches(files)) {
        const batchBytes = batch.reduce(function (sum, file) { return sum + file.size; }, 0);
        label.textContent = "Uploading " + plural(files.length, "file") + "…";
        try {
          const html = await send(batch, function (fraction) {
            bar.value = Math.round(((done + fraction * batchBytes) / total) * 100);
          });
          showResult(html);
          document.body.dispatchEvent(new CustomEvent("documents:uploaded"));
        } catch (error) {
          showError(batch, error);
        }
        done += batchBytes;
        sent += batch.length;
        bar.value = Math.round((done / total) * 100);
        label.textContent = "Sent " + sent + " of " + plural(files.length, "file") + ".";
      }
      label.textContent = "Sent " + plural(files.length, "file") + ". Extraction runs in the background; rows update below.";
    }
    bar.hidden = true;
    busy = false;
  }

  function upload(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    queue.push.apply(queue, files);
    drain();
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      zone.classList.add("is-dragover");
    });
  });
  ["dragleave", "dragend"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("is-dragover"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("is-dragover");
    upload(event.dataTransfer && event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  ["dragover", "drop"].forEach(function (name) {
    window.addEventListener(name, function (event) {
      if (!zone.contains(event.target)) event.preventDefault();
    });
  });
  input.addEventListener("change", function () {
    upload(input.files);
    input.value = "";
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    upload(input.files);
  });
})();
