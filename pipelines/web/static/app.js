// The upload page: task choice, drag-and-drop or file picker, a job followed by polling, the
// result's downloads and the 3D viewer (loaded on its own so the page works without WebGL).

const MAX_BYTES = 16 * 1024 * 1024;
const POLL_MS = 400;
const $ = (id) => document.getElementById(id);

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
  resetResult();
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
    showError(`${file.name}: the upload failed (${error.message})`);
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (response.status !== 202) {
    $("job").hidden = true;
    showError(`${file.name}: ${body.error || response.statusText}`);
    return;
  }
  setState("running");
  await follow(body.status_url);
}

async function follow(url) {
  for (;;) {
    let job;
    try {
      const response = await fetch(url);
      job = await response.json();
      if (!response.ok) throw new Error(job.error || response.statusText);
    } catch (error) {
      showError(`lost the job: ${error.message}`);
      return;
    }
    setProgress(job.progress, job.status === "running" ? job.stage : job.status);
    if (job.status === "done") return showResult(job);
    if (job.status === "failed") return showError(`the job failed: ${job.error}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function showResult(job) {
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
    const picture = { image: "input", render: "render" }[file.role];
    if (picture) {
      $(picture).src = file.url;
      $(`${picture}-figure`).hidden = false;
    }
  }
  const glb = job.files.find((file) => file.role === "viewer");
  await viewerReady;
  if (!glb) {
    const note = "The model found no surface in this image.";
    if (viewer) viewer.clear(note);
    else $("viewer-note").textContent = note;
  } else if (viewer) {
    try {
      const faces = await viewer.load(glb.url);
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
    if (event.key === "Enter" || event.key === " ") $("file").click();
  });
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) upload(file);
    event.target.value = "";
  });
}

setUpDrop();
loadTasks().catch((error) => showError(`cannot reach the server: ${error.message}`));
