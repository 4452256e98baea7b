// The upload page: task choice, drag-and-drop or file picker, a job followed by polling, the
// result's downloads and the 3D viewer (loaded on its own so the page works without WebGL).

const MAX_BYTES = 16 * 1024 * 1024;
const POLL_MS = 400;
const RETRY_MAX_MS = 5000; // a lost connection (a server restart) is retried, backing off to this
const $ = (id) => document.getElementById(id);
const VIEWER_NOTE = "The 3D result appears here. Drag to turn, scroll to zoom.";

// Each upload (or job restored from the address) gets a number; a job followed for an older
// one stops showing anything, so two quick uploads never mix their results.
let current = 0;

let viewer = null;
const viewerReady = import("./viewer.js")
  .then((module) => {
    viewer = new module.Viewer($("viewer"));
    $("fit").addEventListener("click", () => viewer.fit());
    $("wireframe").addEventListener("change", (e) => viewer.setWireframe(e.target.checked));
  })
  .catch((error) => {
    $("viewer-note").textContent = `3D viewer unavailable: ${error.message}`;
  });

function setState(state) {
  document.body.dataset.state = state;
  $("drop").classList.toggle("busy", state === "uploading" || state === "running");
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

function setProgress(fraction, label) {
  $("job").hidden = false;
  $("progress").value = fraction;
  $("stage").textContent = label;
}

function resetResult() {
  $("error").hidden = true;
  $("downloads").replaceChildren();
  $("summary").textContent = "";
  $("input-figure").hidden = true;
  $("render-figure").hidden = true;
  $("faces").textContent = "";
}

// A new job empties the viewer: an earlier job's mesh must not stand beside this one's
// progress or error.
function clearViewer() {
  $("fit").disabled = true;
  $("wireframe").disabled = true;
  if (viewer) viewer.clear(VIEWER_NOTE);
}

async function loadTasks() {
  const response = await fetch("api/tasks");
  const tasks = await response.json();
  const select = $("task");
  for (const task of tasks) {
    const option = document.createElement("option");
    option.value = task.name;
    option.textContent = task.title;
    option.dataset.hint = task.hint;
    select.append(option);
  }
  const showHint = () => {
    const chosen = select.selectedOptions[0];
    $("hint").textContent = chosen ? chosen.dataset.hint : "This server runs no task.";
  };
  select.addEventListener("change", showHint);
  showHint();
}

async function upload(file) {
  const token = ++current;
  resetResult();
  clearViewer();
  if (file.size > MAX_BYTES) {
    showError(`${file.name}: the file is larger than 16 MB`);
    return;
  }
  const form = new FormData();
  form.append("task", $("task").value);
  form.append("image", file);
  setState("uploading");
  setProgress(0, "uploading");
  let response;
  try {
    response = await fetch("api/jobs", { method: "POST", body: form });
  } catch (error) {
    if (token === current) showError(`${file.name}: the upload failed (${error.message})`);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (token !== current) return;
  if (response.status !== 202) {
    $("job").hidden = true;
    showError(`${file.name}: ${body.error || response.statusText || `HTTP ${response.status}`}`);
    return;
  }
  history.replaceState(null, "", `#job=${body.id}`); // a reload follows the same job
  setState("running");
  await follow(`api/jobs/${body.id}`, token);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(url, token) {
  let wait = POLL_MS;
  for (;;) {
    let response, job;
    try {
      response = await fetch(url);
      job = await response.json();
    } catch (error) {
      response = null; // the server is unreachable for now (restarting): try again
    }
    if (token !== current) return;
    if (response && response.status === 404) {
      return showError(`the job is gone: ${(job && job.error) || "no such job"}`);
    }
    if (!response || !response.ok) {
      $("stage").textContent = "reconnecting to the server…";
      wait = Math.min(wait * 2, RETRY_MAX_MS);
      await pause(wait);
      continue;
    }
    wait = POLL_MS;
    setProgress(job.progress, job.status === "running" ? job.stage : job.status);
    if (job.status === "done") return showResult(job, token);
    if (job.status === "failed") return showError(`the job failed: ${job.error}`);
    await pause(POLL_MS);
  }
}

async function showResult(job, token) {
  resetResult();
  const facts = [`${job.seconds} s`];
  for (const [key, value] of Object.entries(job.summary)) facts.push(`${key}: ${value}`);
  $("summary").textContent = facts.join(" · ");
  for (const file of job.files) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = file.url;
    link.download = file.name;
    link.className = "download";
    link.dataset.role = file.role;
    link.textContent = `${file.role} (${file.name})`;
    item.append(link);
    $("downloads").append(item);
    const hasPreview = job.files.some((other) => other.role === "preview");
    const picture = { image: hasPreview ? null : "input", preview: "input", render: "render" }[
      file.role
    ];
    if (picture) {
      $(picture).src = file.url;
      $(`${picture}-figure`).hidden = false;
    }
  }
  const glb = job.files.find((file) => file.role === "viewer");
  await viewerReady;
  if (token !== current) return;
  if (!glb) {
    const note = "The model found no surface in this image.";
    if (viewer) viewer.clear(note);
    else $("viewer-note").textContent = note;
  } else if (viewer) {
    try {
      viewer.setWireframe(false); // each result starts solid, as its checkbox shows
      const faces = await viewer.load(glb.url);
      if (token !== current || faces === null) return; // a newer job cleared or replaced it
      $("faces").textContent = `${faces} faces`;
      $("fit").disabled = false;
      $("wireframe").disabled = false;
      $("wireframe").checked = false;
    } catch (error) {
      showError(`the viewer could not show the mesh: ${error.message}`);
      return;
    }
  }
  setState("done");
}

function setUpDrop() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) upload(file);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault(); // a button's keys: no page scroll on Space
    $("file").click();
  });
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) upload(file);
    event.target.value = "";
  });
}

function resumeFromAddress() {
  const match = /^#job=([A-Za-z0-9_-]{22})$/.exec(location.hash);
  if (!match) return;
  const token = ++current;
  clearViewer();
  setState("running");
  setProgress(0, "following the job");
  follow(`api/jobs/${match[1]}`, token);
}

setUpDrop();
loadTasks().catch((error) => showError(`cannot reach the server: ${error.message}`));
resumeFromAddress();
