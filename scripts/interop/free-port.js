'use strict'
// Prints a TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close), for
// listeners of the JS side that cannot report the port they bound.
const net = require('net')
const server = net.createServer()
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address()
  server.close(() => console.log(port))
})
