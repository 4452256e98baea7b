// The Three.js viewer: a GLB (y up, as glTF and three.js have it) under hemisphere + key + rim
// lights, turned with OrbitControls, fitted to the view, optionally drawn as wireframe. recon's
// objects face +y, which a .glb stores as -z: the camera starts there, in front, to one side
// and above, with the key light beside it.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

export const BACKGROUND = 0xf3f4f6;
// A node named "face" (task skull) is drawn translucent over the "skull"; anything else is one
// opaque surface.
const LOOKS = {
  face: { color: 0xe0b49a, transparent: true, opacity: 0.45, depthWrite: false },
  skull: { color: 0xf2ecdc },
};
const DEFAULT_LOOK = { color: 0x6f8fb8 };

export class Viewer {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    container.append(this.renderer.domElement);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x8a94a6, 1.6));
    const key = new THREE.DirectionalLight(0xffffff, 2.0);
    key.position.set(2, 3, -2);
    const rim = new THREE.DirectionalLight(0xffffff, 0.8);
    rim.position.set(-2, 1, 2);
    this.scene.add(key, rim);

    this.camera = new THREE.PerspectiveCamera(40, 1, 0.01, 100);
    this.camera.position.set(1.4, 1.0, -1.8);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.model = null;
    this.wireframe = false;
    this.generation = 0; // counts loads and clears: only the latest one shows its model

    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    this.renderer.setAnimationLoop(() => {
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
    });
  }

  resize() {
    const { clientWidth: width, clientHeight: height } = this.container;
    if (!width || !height) return;
    this.renderer.setSize(width, height);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
  }

  // The GLB's face count once it is shown; null when a later load or clear came first.
  async load(url) {
    const generation = ++this.generation;
    const gltf = await new GLTFLoader().loadAsync(url);
    if (generation !== this.generation) return null;
    this.removeModel();
    this.model = gltf.scene;
    let faces = 0;
    this.model.traverse((node) => {
      if (!node.isMesh) return;
      if (!node.geometry.attributes.normal) node.geometry.computeVertexNormals();
      node.material = new THREE.MeshStandardMaterial({
        ...(LOOKS[node.name] ?? DEFAULT_LOOK),
        roughness: 0.55,
        metalness: 0.05,
        side: THREE.DoubleSide,
        wireframe: this.wireframe,
      });
      const geometry = node.geometry;
      faces += (geometry.index ? geometry.index.count : geometry.attributes.position.count) / 3;
    });
    this.scene.add(this.model);
    this.fit();
    this.renderer.domElement.dataset.faces = String(faces);
    this.container.querySelector(".viewer-note").hidden = true;
    return faces;
  }

  removeModel() {
    if (!this.model) return;
    this.scene.remove(this.model);
    this.model.traverse((node) => node.geometry?.dispose());
    this.model = null;
  }

  clear(note) {
    this.generation += 1;
    this.removeModel();
    delete this.renderer.domElement.dataset.faces;
    const element = this.container.querySelector(".viewer-note");
    element.textContent = note;
    element.hidden = false;
  }

  fit() {
    if (!this.model) return;
    const box = new THREE.Box3().setFromObject(this.model);
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const halfFov = THREE.MathUtils.degToRad(this.camera.fov / 2);
    const fitFov = this.camera.aspect < 1 ? Math.atan(Math.tan(halfFov) * this.camera.aspect) : halfFov;
    const distance = (sphere.radius / Math.sin(fitFov)) * 1.1;
    const direction = new THREE.Vector3(0.6, 0.45, -0.8).normalize();
    this.camera.position.copy(sphere.center).addScaledVector(direction, distance);
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(sphere.center);
    this.controls.update();
  }

  setWireframe(on) {
    this.wireframe = on;
    this.model?.traverse((node) => {
      if (node.isMesh) node.material.wireframe = on;
    });
  }
}
