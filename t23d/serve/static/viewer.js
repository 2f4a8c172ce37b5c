// Interactive glTF viewer: three.js (vendored) with GLTFLoader and OrbitControls.
// Keyboard: arrow keys orbit (when the viewer has focus), + and - zoom.

import {
  AmbientLight, Box3, Color, DirectionalLight, GLTFLoader, HemisphereLight, OrbitControls,
  PerspectiveCamera, Scene, SRGBColorSpace, Vector3, WebGLRenderer,
} from "/static/vendor/three-viewer.min.js";

export class AssetViewer {
  constructor(container) {
    this.container = container;
    this.renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.outputColorSpace = SRGBColorSpace;
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    container.append(this.renderer.domElement);
    this.scene = new Scene();
    this.scene.background = new Color(0xdfe5eb);
    this.scene.add(new HemisphereLight(0xffffff, 0x8a8f99, 1.6));
    this.scene.add(new AmbientLight(0xffffff, 0.4));
    const sun = new DirectionalLight(0xffffff, 1.2);
    sun.position.set(2, 4, 3);
    this.scene.add(sun);
    this.camera = new PerspectiveCamera(40, 1, 0.01, 1000);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.controls.listenToKeyEvents(container);
    this.controls.keyRotateSpeed = 2.0;
    container.addEventListener("keydown", (e) => this.onKey(e));
    this.model = null;
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    this.renderer.setAnimationLoop(() => {
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
    });
  }

  onKey(e) {
    if (e.key === "+" || e.key === "=") this.zoom(0.85);
    else if (e.key === "-" || e.key === "_") this.zoom(1 / 0.85);
    else if (e.key.startsWith("Arrow")) {
      // OrbitControls pans with plain arrows; orbit instead (as with the mouse), like a turntable
      e.preventDefault();
      e.stopImmediatePropagation();
      const angle = 0.12;
      const offset = this.camera.position.clone().sub(this.controls.target);
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        offset.applyAxisAngle(new Vector3(0, 1, 0), e.key === "ArrowLeft" ? -angle : angle);
      } else {
        const axis = new Vector3().crossVectors(new Vector3(0, 1, 0), offset).normalize();
        offset.applyAxisAngle(axis, e.key === "ArrowUp" ? -angle : angle);
      }
      this.camera.position.copy(this.controls.target).add(offset);
    } else return;
  }

  zoom(factor) {
    const offset = this.camera.position.clone().sub(this.controls.target).multiplyScalar(factor);
    this.camera.position.copy(this.controls.target).add(offset);
  }

  resize() {
    const w = this.container.clientWidth || 640;
    const h = this.container.clientHeight || 400;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
  }

  clear() {
    if (this.model) {
      this.scene.remove(this.model);
      this.model.traverse((o) => {
        if (o.geometry) o.geometry.dispose();
        if (o.material) [].concat(o.material).forEach((m) => { if (m.map) m.map.dispose(); m.dispose(); });
      });
      this.model = null;
    }
  }

  async load(url) {
    const gltf = await new GLTFLoader().loadAsync(url);
    this.clear();
    this.model = gltf.scene;
    this.scene.add(this.model);
    // frame the model: look at its bounding box from the front and a little above
    const box = new Box3().setFromObject(this.model);
    const size = box.getSize(new Vector3()).length() || 1;
    const center = box.getCenter(new Vector3());
    this.controls.target.copy(center);
    this.camera.near = size / 100;
    this.camera.far = size * 100;
    this.camera.position.copy(center).add(new Vector3(0, size * 0.35, size * 1.1));
    this.camera.updateProjectionMatrix();
    this.controls.update();
  }
}
