// The addon's sources: every .cc of the native modules it links, listed for binding.gyp
// so that new files need no edit there. Test and fuzz code is not part of the addon.
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const folders = ['common', 'hv/host', 'hv/kvm', 'vmm', 'devices', 'devices/input', 'devices/net', 'devices/virtio', 'devices/scsi', 'devices/pci', 'devices/display', 'devices/platform', 'boot', 'machine', 'binding', 'disk', 'disk/operations', 'disk/vhd', 'disk/vhdx', 'disk/qcow2'];
const list = (folder) => {
  const dir = path.join(root, folder);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.cc'))
    .sort()
    .map((f) => `${folder}/${f}`);
};
module.exports = folders.flatMap(list);
// The worker's control socket and protocol: part of berth-vmm only, not of the addon.
module.exports.worker = list('worker');
// The graphical console's VNC server: part of berth-vmm only (the worker serves it).
module.exports.vnc = list('vnc');
