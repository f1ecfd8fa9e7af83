// The `berth` command line for the crash-safety specs: `node crash-cli.js STEP ARGS...`
// runs `berth ARGS...` and kills the process with SIGKILL (no cleanup, no flush) when it
// reaches the named step of a checkpoint operation (app/services/crash.ts).
import { main } from '../../app/cli/main';
import { installCrashHook } from '../../app/services/crash';

const [step, ...args] = process.argv.slice(2);
installCrashHook((reached) => {
  if (reached === step) process.kill(process.pid, 'SIGKILL');
});
main(args).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`crash-cli: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
