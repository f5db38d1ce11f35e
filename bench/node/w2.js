// W2 switch: one task yields to the loop M times (setImmediate: one turn).
'use strict';
const { setImmediate: tick } = require('node:timers/promises');

async function main(m) {
  let count = 0;
  for (let i = 0; i < m; i++) {
    await tick();
    count++;
  }
  console.log(`count ${count}`);
}

main(Number(process.argv[2] ?? 1000000));
