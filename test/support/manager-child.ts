// A manager process that starts a VM and exits at once: the VM must keep running in its
// worker. usage: node manager-child.js <root> <vm-name>; prints the summary as JSON.
import { VmManager } from '../../app/services';

async function main(): Promise<void> {
  const [root, name] = process.argv.slice(2);
  if (!root || !name) throw new Error('usage: manager-child <root> <vm-name>');
  const summary = await new VmManager({ root }).start(name);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
