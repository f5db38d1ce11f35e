// W1 spawn: N tasks; task i yields to the loop once and returns i.
'use strict';
const { setImmediate: tick } = require('node:timers/promises');

async function task(i) {
  await tick();
  return i;
}

async function main(n) {
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(task(i));
  const results = await Promise.all(tasks);
  console.log(`sum ${results.reduce((a, b) => a + b, 0)}`);
}

main(Number(process.argv[2] ?? 100000));
