// A child process for the registry concurrency spec: increments a counter kept in a VM's
// notes N times, each a locked read-modify-write through the registry.
// usage: node registry-racer.js <root> <vm-id> <count>
import { Registry } from '../../app/services';

async function main(): Promise<void> {
  const [root, id, count] = process.argv.slice(2);
  if (!root || !id || !count) throw new Error('usage: registry-racer <root> <vm-id> <count>');
  const registry = new Registry(root);
  for (let i = 0; i < Number(count); i++) {
    await registry.update(id, `racer ${process.pid}`, (c) => ({ ...c, notes: String(Number(c.notes || '0') + 1) }));
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
