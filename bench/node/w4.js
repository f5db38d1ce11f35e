// W4 shutdown: N tasks sleep 3600 s. Node has no task cancellation: its
// users pass an AbortSignal and abort it on SIGINT. Each task's cleanup
// yields to the loop once, then counts itself.
'use strict';
const { setTimeout: sleep, setImmediate: tick } = require('node:timers/promises');

let cleaned = 0;

async function sleeper(signal) {
  try {
    await sleep(3600 * 1000, undefined, { signal });
  } finally {
    await tick();
    cleaned++;
  }
}

async function main(n) {
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(sleeper(ac.signal));
  await tick();
  process.stdout.write('READY\n');
  await Promise.allSettled(tasks);
  console.log(`cleaned ${cleaned}`);
}

main(Number(process.argv[2] ?? 100000));
