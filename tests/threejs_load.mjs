// Load a .glb with three.js's own GLTFLoader in Node and print what it built, as JSON.
//   node tests/threejs_load.mjs ASSET.glb
// Node has no image decoder: createImageBitmap is provided here and reads the PNG's IHDR header (size)
// and checks its signature, so the test sees that three.js found, extracted and attached the texture.
import { readFileSync } from "node:fs";
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";

globalThis.self = globalThis;
globalThis.createImageBitmap = async (blob) => {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((b, i) => bytes[i] === b)) throw new Error("texture is not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return { width: view.getUint32(16), height: view.getUint32(20), byteLength: bytes.length, close() {} };
};

const path = process.argv[2];
const data = readFileSync(path);
const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
const loader = new GLTFLoader();
loader.parse(
  buffer,
  "",
  (gltf) => {
    const meshes = [];
    gltf.scene.traverse((o) => {
      if (!o.isMesh) return;
      const g = o.geometry;
      const m = o.material;
      g.computeBoundingBox();
      meshes.push({
        name: o.name,
        attributes: Object.keys(g.attributes).sort(),
        vertices: g.attributes.position.count,
        indices: g.index ? g.index.count : 0,
        material: m.type,
        metalness: m.metalness,
        roughness: m.roughness,
        map: m.map
          ? {
              width: m.map.image.width,
              height: m.map.image.height,
              bytes: m.map.image.byteLength,
              colorSpace: m.map.colorSpace,
              flipY: m.map.flipY,
            }
          : null,
        normalMap: m.normalMap
          ? {
              width: m.normalMap.image.width,
              height: m.normalMap.image.height,
              colorSpace: m.normalMap.colorSpace,
              flipY: m.normalMap.flipY,
              normalScale: m.normalScale.toArray(),
              sameUVs: m.normalMap.channel === (m.map ? m.map.channel : 0),
            }
          : null,
        tangents: g.attributes.tangent ? { itemSize: g.attributes.tangent.itemSize } : null,
        bbox: [g.boundingBox.min.toArray(), g.boundingBox.max.toArray()],
      });
    });
    console.log(JSON.stringify({ scene: gltf.scene.name, meshes, revision: THREE.REVISION }));
  },
  (err) => {
    console.error(String(err && err.stack ? err.stack : err));
    process.exit(1);
  },
);
