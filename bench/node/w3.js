// W3 timers: N tasks, task i sleeps (i mod 1000) ms; wait for them all.
'use strict';
const { setTimeout: sleep } = require('node:timers/promises');

async function task(i) {
  await sleep(i % 1000);
  return true;
}

async function main(n) {
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(task(i));
  const results = await Promise.all(tasks);
  console.log(`count ${results.length}`);
}

main(Number(process.argv[2] ?? 100000));
