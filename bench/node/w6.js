// W6 churn: N short tasks started over time, at most 1000 alive at once;
// each yields to the loop once and returns. The main function waits for a
// free slot on a promise.
'use strict';
const { setImmediate: tick } = require('node:timers/promises');

const WINDOW = 1000;
let sum = 0, done = 0, alive = 0, wake = null;

async function task(i) {
  await tick();
  sum += i;
  done++;
  alive--;
  if (wake) { const w = wake; wake = null; w(); }
}

async function main(n) {
  for (let i = 0; i < n; i++) {
    while (alive >= WINDOW) await new Promise((r) => { wake = r; });
    alive++;
    task(i);
  }
  while (alive > 0) await new Promise((r) => { wake = r; });
  console.log(`churned ${done} sum ${sum}`);
}

main(Number(process.argv[2] ?? 1000000));
