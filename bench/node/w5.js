// W5 TCP echo: node:net, each socket piped into itself (TCP_NODELAY on).
// Prints READY <port>; runs until killed.
'use strict';
const net = require('node:net');

const server = net.createServer({ noDelay: true }, (sock) => {
  sock.on('error', () => {});
  sock.pipe(sock);
});
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0), backlog: 511 }, () => {
  console.log(`READY ${server.address().port}`);
});
