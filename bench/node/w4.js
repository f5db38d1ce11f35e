// W4 shutdown: N tasks sleep 3600 s; on SIGINT every sleep is cancelled, and
// each task's cleanup yields to the loop once, then counts itself.
// Node has no task cancellation: the sleeps are kept in a Set that the
// SIGINT listener cancels. (An AbortSignal shared by all N sleeps, the
// timers/promises way, costs O(N) per sleep to register: about 100 s to
// start 100 000 of them here; one AbortController per task shuts down
// 4 × slower than this Set. docs/performance.md has the numbers.)
'use strict';
const { setImmediate: tick } = require('node:timers/promises');

let cleaned = 0;
const sleeping = new Set();

function sleep(ms) {
  return new Promise((resolve, reject) => {
    const entry = { reject, timer: setTimeout(() => { sleeping.delete(entry); resolve(); }, ms) };
    sleeping.add(entry);
  });
}

function cancelAll() {
  for (const { timer, reject } of sleeping) {
    clearTimeout(timer);
    reject(new Error('cancelled'));
  }
  sleeping.clear();
}

async function sleeper() {
  try {
    await sleep(3600 * 1000);
  } finally {
    await tick();
    cleaned++;
  }
}

async function main(n) {
  process.once('SIGINT', cancelAll);
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(sleeper());
  await tick();
  process.stdout.write('READY\n');
  await Promise.allSettled(tasks);
  console.log(`cleaned ${cleaned}`);
}

main(Number(process.argv[2] ?? 100000));
