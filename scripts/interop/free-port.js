'use strict'
// Prints N (default 1) distinct TCP ports, one per line, that were free on 127.0.0.1 a moment
// ago (each bound to port 0 and read while all are held, then closed), for listeners of the JS
// side that cannot report the port they bound. Held together, two ports asked for at once can
// never be the same one.
const net = require('net')
const count = Math.max(1, Number(process.argv[2] || 1))
const servers = []
let bound = 0
for (let i = 0; i < count; i++) {
  const server = net.createServer()
  servers.push(server)
  server.listen(0, '127.0.0.1', () => {
    bound += 1
    if (bound === count) {
      const ports = servers.map((s) => s.address().port)
      let closed = 0
      for (const s of servers) {
        s.close(() => {
          closed += 1
          if (closed === count) console.log(ports.join('\n'))
        })
      }
    }
  })
}
